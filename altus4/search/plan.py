"""From a search request and a discovered schema to the SQL Altus 4 runs.

Identifiers come only from the discovered schema (user-supplied names are
looked up there, case-insensitively, and replaced by the schema's spelling) and
are always backtick-quoted; the query text is always a parameter.

MATCH must name a FULLTEXT index's exact column list, so `columns` selects
which indexes are used; a table that is named explicitly but has no usable
FULLTEXT index is searched with a parameterised LIKE fallback instead.

Where the table has a primary key the statement ranks and counts in a derived
table that holds only the key and the score, then joins back for the page's
rows ("late row lookup"). Counting with `COUNT(*) OVER ()` beside every column
made the server copy each matching row, TEXT columns included, into a temporary
table before the sort: on 100k products that halved throughput (bench/run.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from altus4.db.schema import DatabaseSchema, TableSchema
from altus4.db.sql import escape_like, ident, quote
from altus4.search.conditions import Clause
from altus4.search.ordering import TableOrder

SCORE = "__altus4_score"
TOTAL = "__altus4_total"  # COUNT(*) OVER (): every match counted in the same pass (MySQL 8, MariaDB 10.2+)
RANK = "__altus4_rank"  # ROW_NUMBER() over the window's rows (`build_select`'s `skip`)
MAX_LIKE_TERMS = 8
MODES = {"natural": "IN NATURAL LANGUAGE MODE", "boolean": "IN BOOLEAN MODE"}


class UnknownIdentifier(ValueError):
    def __init__(self, kind: str, names: list[str], available: dict[str, list[str]]):
        super().__init__(f"unknown {kind}: {', '.join(names)}")
        self.kind = kind
        self.names = names
        self.available = available


def fulltext_ddl(table: str, columns: list[str] | tuple[str, ...]) -> str:
    """The statement that makes `columns` of `table` searchable, as suggested to users (never run by us)."""
    name = quote(f"ft_{table}_{'_'.join(columns)}"[:64])
    return f"ALTER TABLE {quote(table)} ADD FULLTEXT INDEX {name} ({', '.join(quote(c) for c in columns)})"


@dataclass(frozen=True)
class TableQuery:
    table: str
    columns: tuple[str, ...]  # every column, selected for `data`
    key: tuple[str, ...]  # ordering tie-break and result id
    key_is_unique: bool = False  # `key` is the primary key, so rows can be joined back by it
    match_groups: tuple[tuple[str, ...], ...] = ()  # FULLTEXT index column lists
    like_columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    browse: bool = False  # an empty query: every row (that the filter lets through), no MATCH

    @property
    def strategy(self) -> str:
        return "browse" if self.browse else "fulltext" if self.match_groups else "like"

    @functools.cached_property  # asked for every row rendered
    def searched_columns(self) -> tuple[str, ...]:
        cols = [c for group in self.match_groups for c in group] + list(self.like_columns)
        return tuple(dict.fromkeys(cols))


def _resolve(requested: list[str], known: list[str]) -> dict[str, str]:
    """requested name -> schema spelling (exact match first, then case-insensitive)."""
    lowered = {k.lower(): k for k in known}
    resolved = {}
    for name in requested:
        if name in known:
            resolved[name] = name
        elif name.lower() in lowered:
            resolved[name] = lowered[name.lower()]
    return resolved


def _order_key(table: TableSchema) -> tuple[str, ...]:
    return table.primary_key or tuple(list(table.columns)[:5])


def plan_table(table: TableSchema, columns: list[str] | None, explicit: bool) -> TableQuery | None:
    wanted = set(_resolve(columns, list(table.columns)).values()) if columns else None
    groups = [ix.columns for ix in table.fulltext_indexes if wanted is None or wanted & set(ix.columns)]
    base: dict[str, Any] = dict(
        table=table.name, columns=tuple(table.columns), key=_order_key(table), key_is_unique=bool(table.primary_key)
    )
    if groups:
        covered = {c for g in groups for c in g}
        uncovered = sorted((wanted or set()) - covered)
        notes = tuple(f"column {c!r} of {table.name!r} has no FULLTEXT index and was not searched" for c in uncovered)
        return TableQuery(match_groups=tuple(dict.fromkeys(groups)), notes=notes, **base)
    if not explicit:
        return None
    like = [c for c in table.text_columns if wanted is None or c in wanted]
    if not like:
        return None
    return TableQuery(
        like_columns=tuple(like),
        notes=(
            f"{table.name!r} has no FULLTEXT index on {', '.join(like)}: "
            "searched with LIKE (slow, no relevance ranking)",
        ),
        **base,
    )


def named(schema: DatabaseSchema, tables: list[str]) -> list[TableSchema]:
    """The tables of `schema` among `tables` (case-insensitively), in the request's order."""
    return [schema.tables[name] for name in _resolve(tables, list(schema.tables)).values()]


def browse_table(table: TableSchema) -> TableQuery:
    """A table read without a query: every column for `data`, its text columns for snippets."""
    return TableQuery(
        table=table.name,
        columns=tuple(table.columns),
        key=_order_key(table),
        key_is_unique=bool(table.primary_key),
        like_columns=tuple(table.text_columns),
        browse=True,
    )


def plan(schema: DatabaseSchema, tables: list[str] | None, columns: list[str] | None) -> list[TableQuery]:
    """The table queries for one database; names it lacks are skipped (checked across databases by the caller)."""
    if tables:
        chosen = named(schema, tables)
    else:
        chosen = list(schema.tables.values())
    queries = [plan_table(t, columns, explicit=bool(tables)) for t in chosen]
    return [q for q in queries if q is not None]


def check_names(schemas: dict[str, DatabaseSchema], tables: list[str] | None, columns: list[str] | None) -> None:
    """:raise UnknownIdentifier: a named table or column exists in none of the searched databases."""
    if tables:
        known = [t for s in schemas.values() for t in s.tables]
        missing = [t for t in tables if t not in _resolve(tables, known)]
        if missing:
            raise UnknownIdentifier("tables", missing, {s.database: sorted(s.tables) for s in schemas.values()})
    if columns:
        candidates = [
            t
            for s in schemas.values()
            for t in s.tables.values()
            if not tables or t.name in _resolve(tables, list(s.tables)).values()
        ]
        known = [c for t in candidates for c in t.columns]
        missing = [c for c in columns if c not in _resolve(columns, known)]
        if missing:
            raise UnknownIdentifier("columns", missing, {t.name: list(t.columns) for t in candidates})


def _against(mode: str) -> str:
    return f"AGAINST (%s {MODES[mode]})"


def _like_pattern(term: str) -> str:
    return f"%{escape_like(term)}%"


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple


def predicate(
    q: TableQuery,
    mode: str,
    text: str,
    like_terms: tuple[str, ...],
    like_excluded: tuple[str, ...],
    where: Clause | None = None,
) -> tuple[str, str, tuple, tuple]:
    """(score expression, WHERE condition, the score's params, the condition's): the query's match (none in
    browse mode, which scores every row 0), and the filter."""
    score_params: tuple = ()
    params: tuple = ()
    if q.browse:
        score, condition = "0", ""
    elif q.match_groups:
        matches = [f"MATCH ({', '.join(ident(c) for c in g)}) {_against(mode)}" for g in q.match_groups]
        score, condition = " + ".join(matches), " OR ".join(matches)
        score_params = params = (text,) * len(matches)
    else:
        score, condition, both = _like_clauses(q.like_columns, like_terms, like_excluded)
        half = len(like_terms[:MAX_LIKE_TERMS]) * len(q.like_columns)
        score_params, params = both[:half], both[half:]
    if where is not None and where.sql is not None:
        condition = f"({condition}) AND ({where.sql})" if condition else where.sql
        params += where.params
    return score, condition or "1 = 1", score_params, params


def build_select(
    q: TableQuery,
    mode: str,
    text: str,
    like_terms: tuple[str, ...],
    like_excluded: tuple[str, ...],
    window: int,
    skip: tuple[int, int] | None = None,
    where: Clause | None = None,
    order: TableOrder | None = None,
) -> Statement:
    """The table's top `window` rows by score (or by `order`'s columns, then score), each with the score and
    the count of every match; `where` narrows the matches (a filter), `mode` "browse" takes every row. With
    `skip` (after, offset), for a single table's page at or past `after` in relevance order: the rows ranked
    in (after, offset] are left out, as the page needs nothing of them and the caller knows how many there
    were from the count, and those up to `after` come with their key and searched text only (their scores are
    all the page needs)."""
    score, condition, score_params, where_params = predicate(q, mode, text, like_terms, like_excluded, where)
    params = score_params + where_params
    ranked = f"({score}) AS {ident(SCORE)}, COUNT(*) OVER () AS {ident(TOTAL)} FROM {ident(q.table)} WHERE {condition}"
    if not q.key_is_unique:
        sql = f"SELECT {_columns(q.columns)}, {ranked} ORDER BY {_order(q.key, order=order)} LIMIT %s"
        return Statement(sql, (*params, window))
    join = " AND ".join(f"t.{ident(c)} = s.{ident(c)}" for c in q.key)
    if skip is not None and order is None:
        return _skipping_select(q, ranked, join, (*params, window), skip)
    sql = (
        f"SELECT {_columns(q.columns, 't.')}, s.{ident(SCORE)}, s.{ident(TOTAL)}"
        f" FROM (SELECT {_columns(q.key)}, {ranked} ORDER BY {_order(q.key, order=order)} LIMIT %s) AS s"
        f" JOIN {ident(q.table)} AS t ON {join} ORDER BY {_order(q.key, 's.', order, 't.')}"
    )
    return Statement(sql, (*params, window))


def _skipping_select(q: TableQuery, ranked: str, join: str, params: tuple, skip: tuple[int, int]) -> Statement:
    """`build_select`'s late row lookup without the rows ranked in `skip`: they are neither looked up nor sent
    (a page at offset 180 parsed 200 rows, key and score only for 130 of them; now 70). The rows up to `skip`'s
    start come before the page, there for their scores: only their key and searched text are read (the other
    columns NULL), which is what BM25 re-scores."""
    rank = ident(RANK)
    wanted = set(q.key) | set(q.searched_columns)
    columns = ", ".join(
        f"t.{ident(c)}" if c in wanted else f"CASE WHEN s.{rank} <= %s THEN NULL ELSE t.{ident(c)} END AS {ident(c)}"
        for c in q.columns
    )
    scored_only = (skip[0],) * sum(1 for c in q.columns if c not in wanted)
    sql = (
        f"SELECT {columns}, s.{ident(SCORE)}, s.{ident(TOTAL)}"
        f" FROM (SELECT r.*, ROW_NUMBER() OVER (ORDER BY {_order(q.key, 'r.')}) AS {rank}"
        f" FROM (SELECT {_columns(q.key)}, {ranked} ORDER BY {_order(q.key)} LIMIT %s) AS r) AS s"
        f" JOIN {ident(q.table)} AS t ON {join} WHERE s.{rank} <= %s OR s.{rank} > %s"
        f" ORDER BY {_order(q.key, 's.')}"
    )
    return Statement(sql, (*scored_only, *params, *skip))


def _columns(columns: tuple[str, ...], prefix: str = "") -> str:
    return ", ".join(prefix + ident(c) for c in columns)


def _order(key: tuple[str, ...], prefix: str = "", order: TableOrder | None = None, columns: str = "") -> str:
    """`order`'s columns (`sort`) if any, then best score first; the key breaks ties, so every page of the same
    query sees the same order. `prefix` for the score and key, `columns` for sorted columns (the outer query
    reads them from the joined table)."""
    parts = []
    for column, descending, is_score in order.columns if order else ():
        if column is not None:
            parts.append(f"{columns}{ident(column)} {'DESC' if descending else 'ASC'}")
        elif is_score:
            parts.append(f"{prefix}{ident(SCORE)} DESC")
    parts.append(f"{prefix}{ident(SCORE)} DESC")
    return ", ".join(dict.fromkeys([*parts, *(prefix + ident(c) for c in key)]))


def build_fetch(q: TableQuery, keys: list[str], where: Clause | None = None) -> Statement | None:
    """The rows with these primary keys (a one-column key only) that pass the filter, scored 0: vector-only
    candidates."""
    if len(q.key) != 1 or not keys or (where is not None and where.never):
        return None
    marks = ", ".join(["%s"] * len(keys))
    extra, params = (f" AND ({where.sql})", where.params) if where is not None and where.sql else ("", ())
    return Statement(
        f"SELECT {_columns(q.columns)}, 0 AS {ident(SCORE)}, 0 AS {ident(TOTAL)} FROM {ident(q.table)}"
        f" WHERE {ident(q.key[0])} IN ({marks}){extra}",
        (*keys, *params),
    )


def _like_clauses(
    columns: tuple[str, ...], terms: tuple[str, ...], excluded: tuple[str, ...]
) -> tuple[str, str, tuple]:
    """(score expression, WHERE, params for score then WHERE): any term in any column matches."""
    terms = terms[:MAX_LIKE_TERMS]
    pairs = [(c, t) for t in terms for c in columns]
    score = " + ".join(f"({ident(c)} LIKE %s)" for c, _ in pairs)
    where = "(" + " OR ".join(f"{ident(c)} LIKE %s" for c, _ in pairs) + ")"
    patterns = tuple(_like_pattern(t) for _, t in pairs)
    params = patterns + patterns
    for term in excluded[:MAX_LIKE_TERMS]:
        where += " AND NOT (" + " OR ".join(f"COALESCE({ident(c)} LIKE %s, 0)" for c in columns) + ")"
        params += (_like_pattern(term),) * len(columns)
    return score, where, params
