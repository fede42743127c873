"""`sort`: rows ordered by column values, within each table by MySQL, across tables by a merge.

`"price:asc"`, `"products.created_at:desc"`, `"_score:desc"`: at most MAX_KEYS keys; relevance (`_score`)
breaks the ties that remain, then each row's key. Each table sorts its own rows in SQL (its collation, its
index); the tables' lists are merged head by head (`merge`), so pages are exact and stable: page n of the
merge depends only on the first (offset + limit) rows of each table, whatever the merge key thinks of
rows within one table. Across tables, values compare as MySQL compares them, closely enough: numbers by
value, dates as date-times, text ignoring case and accents (the `_ci` collations most tables use); NULL
is lowest, as MySQL sorts it (first ascending, last descending). A column whose values cannot be compared
across the searched tables (a number in one, text in another) is refused.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import heapq
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from altus4.db.schema import TableSchema
from altus4.search import conditions
from altus4.search import filters as f

MAX_KEYS = 3
SCORE = "_score"
_KEY = re.compile(r"^(?P<column>.+):(?P<direction>asc|desc)$", re.IGNORECASE)
SORTABLE = {
    "number": conditions.INTEGER | conditions.DECIMAL,
    "date": conditions.DATES,
    "time": {"time"},
    "text": conditions.STRINGS,
    "binary": conditions.BINARY,
}


class SortError(ValueError):
    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.message = message
        self.key = key


@dataclass(frozen=True)
class SortKey:
    column: f.Column | None  # None: relevance (`_score`)
    descending: bool

    def __str__(self) -> str:
        return f"{self.column if self.column else SCORE}:{'desc' if self.descending else 'asc'}"


@functools.lru_cache(maxsize=1024)
def parse(items: tuple[str, ...]) -> tuple[SortKey, ...]:
    """:raise SortError: a key that is not `column:asc|desc`, `_score` other than descending, too many keys."""
    if len(items) > MAX_KEYS:
        raise SortError(f"sort takes at most {MAX_KEYS} keys", ", ".join(items))
    keys = []
    for item in items:
        match = _KEY.match(item.strip())
        if not match:
            raise SortError(f"{item!r} is not a sort key: write column:asc or column:desc", item)
        name, descending = match.group("column").strip(), match.group("direction").lower() == "desc"
        if name == SCORE:
            if not descending:
                raise SortError("_score sorts descending only (_score:desc)", item)
            keys.append(SortKey(None, True))
            continue
        try:
            node = f.parse(f"{name} IS NULL")  # the filter language's column syntax: name, table.name, `quoted`
        except f.FilterSyntaxError:
            raise SortError(f"{name!r} is not a column name", item) from None
        assert isinstance(node, f.IsNull)
        keys.append(SortKey(node.column, descending))
    return tuple(keys)


def family(data_type: str) -> str | None:
    return next((name for name, types in SORTABLE.items() if data_type in types), None)


@dataclass(frozen=True)
class TableOrder:
    """A table's ORDER BY: (column or None, descending) per key; None for a key naming another table (its rows
    have no value for it) or for `_score` (the caller's score column)."""

    columns: tuple[tuple[str | None, bool, bool], ...]  # (column, descending, is the score)


def for_table(keys: tuple[SortKey, ...], table: TableSchema) -> TableOrder:
    """:raise conditions.MissingColumn: a bare column the table lacks. :raise SortError: a column it cannot
    sort by."""
    out: list[tuple[str | None, bool, bool]] = []
    for key in keys:
        if key.column is None:
            out.append((None, True, True))
            continue
        try:
            name = conditions.resolve(table, key.column)
        except conditions.FilterError as exc:
            raise SortError(exc.message, str(key)) from None
        if name is not None and family(table.columns[name]) is None:
            raise SortError(f"{table.name}.{name} ({table.columns[name]}) cannot be sorted by", str(key))
        out.append((name, key.descending, False))
    return TableOrder(tuple(out))


def check_comparable(keys: tuple[SortKey, ...], tables: Iterable[tuple[TableSchema, TableOrder]]) -> None:
    """:raise SortError: a key whose columns are of different kinds across the searched tables."""
    for i, key in enumerate(keys):
        kinds = {
            family(table.columns[name]): table.name
            for table, order in tables
            if (name := order.columns[i][0]) is not None
        }
        if len(kinds) > 1:
            found = ", ".join(f"{kind} in {table}" for kind, table in kinds.items())
            raise SortError(f"{key} compares values of different kinds across tables ({found})", str(key))


class _Descending:
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value


def comparable(value: Any) -> tuple:
    """A value as MySQL would compare it with values of other tables (NULL lowest)."""
    if value is None:
        return (0,)
    if isinstance(value, bool | int | float | decimal.Decimal):
        return (1, value)
    if isinstance(value, dt.datetime):
        return (1, value.replace(tzinfo=None))
    if isinstance(value, dt.date):
        return (1, dt.datetime(value.year, value.month, value.day))
    if isinstance(value, dt.timedelta | dt.time):
        return (1, str(value))
    if isinstance(value, bytes | bytearray):
        return (1, bytes(value))
    text = unicodedata.normalize("NFKD", str(value))
    return (1, "".join(c for c in text if not unicodedata.combining(c)).casefold().rstrip(" "))


def merge_key(values: tuple[Any, ...], descending: tuple[bool, ...]) -> tuple:
    """The cross-table key of one row's sort values."""
    return tuple(_Descending(comparable(v)) if d else comparable(v) for v, d in zip(values, descending, strict=True))


def merge(lists: list[list[Any]], key) -> list[Any]:
    """The tables' ordered lists as one: at each step the smallest head by `key`; within a list its own order
    is kept (MySQL's), so the first n of the result depend only on the first n of each list."""
    return list(heapq.merge(*lists, key=key))
