"""`altus4 index`: embed a connected table's rows ahead of time, so semantic searches over it make no
model calls for rows. Batched, resumable and incremental: rows whose text is already embedded for the
model (same content hash) are skipped, so a second run embeds only new and changed rows, and rows the table
no longer has are marked deleted. The table is then followed (`altus4.jobs.follower`) from where this run
started."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from altus4.ai.provider import AIUnavailable
from altus4.ai.service import AIService
from altus4.ai.store import content_hash
from altus4.db import targets
from altus4.search import plan as planner
from altus4.search.results import row_key
from altus4.search.semantic import row_text
from altus4.services.connections import ConnectionService

TIMESTAMP_NAMES = ("updated_at", "modified_at", "updated", "modified", "last_modified", "changed_at", "updatedat")


@dataclass
class IndexReport:
    rows: int = 0
    embedded: int = 0
    skipped: int = 0
    deleted: int = 0


def watermark_column(conn, table) -> tuple[str | None, str]:
    """The column to find a table's changes by: an updated-at timestamp ("time": inserts and updates), else an
    AUTO_INCREMENT key ("serial": inserts), else none (only full reconciliations find changes)."""
    for name, data_type in table.columns.items():
        if name.lower() in TIMESTAMP_NAMES and data_type in ("datetime", "timestamp"):
            return name, "time"
    if len(table.primary_key) == 1:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT EXTRA AS extra FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
                " AND TABLE_NAME = %s AND COLUMN_NAME = %s",
                (table.name, table.primary_key[0]),
            )
            if "auto_increment" in str((cur.fetchone() or {}).get("extra") or "").lower():
                return table.primary_key[0], "serial"
    return None, ""


def _current(conn, table: str, column: str | None) -> tuple[str, str] | None:
    """(column, its largest value now): where the follower starts."""
    if column is None:
        return None
    with conn.cursor() as cur:
        cur.execute(f"SELECT MAX({planner.ident(column)}) AS top FROM {planner.ident(table)}", ())
        top = (cur.fetchone() or {}).get("top")
    return (column, str(top)) if top is not None else None


class IndexFailed(Exception):
    """The job cannot go on; the message says why and what to do (the CLI prints it)."""


def _batches(conn, q: planner.TableQuery, columns: tuple[str, ...], size: int) -> Iterator[list[dict[str, Any]]]:
    """Rows in primary-key order (keyset paging on a one-column key; offsets otherwise)."""
    selected = ", ".join(planner.ident(c) for c in dict.fromkeys((*q.key, *columns)))
    order = ", ".join(planner.ident(c) for c in q.key)
    last, offset = None, 0
    while True:
        with conn.cursor() as cur:
            if len(q.key) == 1 and last is not None:
                cur.execute(
                    f"SELECT {selected} FROM {planner.ident(q.table)} WHERE {order} > %s ORDER BY {order} LIMIT %s",
                    (last, size),
                )
            else:
                cur.execute(
                    f"SELECT {selected} FROM {planner.ident(q.table)} ORDER BY {order} LIMIT %s OFFSET %s",
                    (size, offset),
                )
            rows = list(cur.fetchall())
        if not rows:
            return
        yield rows
        last, offset = rows[-1][q.key[0]], offset + len(rows)


def index_table(
    connections: ConnectionService,
    ai: AIService,
    connection: dict[str, Any],
    table: str,
    batch: int = 64,
    progress: Callable[[int], None] | None = None,
    vector_index=None,
) -> IndexReport:
    """:raise IndexFailed: unknown table, no text to embed, AI not configured or failing."""
    if not ai.enabled:
        raise IndexFailed("OPENAI_API_KEY is not set: there is no model to embed with")
    stored = ai.embeddings
    if stored is None:
        raise IndexFailed("this AI service keeps no embedding store to index into")
    schema = connections.schema_for(connection, refresh=True)
    found = {t.lower(): t for t in schema.tables}.get(table.lower())
    if found is None:
        raise IndexFailed(f"no table {table!r}; tables: {', '.join(sorted(schema.tables)) or 'none'}")
    q = planner.plan_table(schema.tables[found], None, explicit=True)
    if q is None:
        raise IndexFailed(f"{found!r} has no text columns to embed")
    columns = q.searched_columns
    model = ai.settings.openai_embedding_model
    report = IndexReport()
    conn = targets.connect(connections.spec(connection), connections.settings)
    seen: set[str] = set()
    try:
        column, _ = watermark_column(conn, schema.tables[found])
        start = _current(conn, found, column)  # before the scan: a change during it is found again, not missed
        for rows in _batches(conn, q, columns, batch):
            texts = [row_text(r, columns) for r in rows]
            hashes = [content_hash(t) for t in texts]
            have = stored.get(model, hashes)
            todo = {h: t for h, t in zip(hashes, texts) if h not in have}
            if todo:
                try:
                    vectors = ai.embed_job(list(todo.values()))
                except AIUnavailable as exc:
                    raise IndexFailed(f"embedding failed ({exc}); run again to resume") from None
                stored.put(model, dict(zip(todo, vectors)))
            keys = [row_key(r, q.key) for r in rows]
            seen.update(keys)
            stored.map_rows(connection["id"], found, model, list(zip(keys, hashes, strict=True)))
            report.rows += len(rows)
            report.embedded += len(todo)
            report.skipped += len(rows) - len(todo)
            if progress:
                progress(len(rows))
        report.deleted = stored.mark_deleted(connection["id"], found, model, seen)
        stored.follow(connection["id"], found, model, start)
    finally:
        conn.close()
        if vector_index is not None:  # workers reload this table's vectors on their next search
            vector_index.bump(connection["id"], found, model)
    return report
