"""`altus4 index`: embed a connected table's rows ahead of time, so semantic searches over it make no
model calls for rows. Batched, resumable and incremental: rows whose text is already embedded for the
model (same content hash) are skipped, so a second run embeds only new and changed rows."""

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


@dataclass
class IndexReport:
    rows: int = 0
    embedded: int = 0
    skipped: int = 0


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
    try:
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
            stored.map_rows(connection["id"], found, model, [(row_key(r, q.key), h) for r, h in zip(rows, hashes)])
            report.rows += len(rows)
            report.embedded += len(todo)
            report.skipped += len(rows) - len(todo)
            if progress:
                progress(len(rows))
    finally:
        conn.close()
        if vector_index is not None:  # workers reload this table's vectors on their next search
            vector_index.bump(connection["id"], found, model)
    return report
