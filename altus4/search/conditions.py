"""A filter tree (`altus4.search.filters`) as a WHERE clause for one table: names from its schema, values as
parameters converted by the column's type.

Semantics, per row (Meilisearch's, where a row without a value is a document without the field):
- a condition on a NULL column is false, except `!=`, `NOT IN` and `IS NULL`, which hold;
- `NOT x` is exactly the rows `x` does not hold for (the tree arrives with every NOT pushed down to the
  conditions, so each condition is two-valued and the positive ones stay sargable: `category = %s`);
- a condition on `other_table.column` holds for this table's rows as on a NULL column (`products.price <
  100` holds for no article; `NOT products.price < 100` for every one), so a table-qualified condition never
  widens what another table returns;
- a bare column this table lacks leaves the table out of the search (`MissingColumn`; the caller warns).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from dataclasses import dataclass

from altus4.db.schema import TableSchema
from altus4.db.sql import ident
from altus4.search import filters as f

INTEGER = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}
DECIMAL = {"decimal", "numeric", "float", "double", "real"}
DATES = {"date", "datetime", "timestamp"}
STRINGS = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"}
BINARY = {"binary", "varbinary"}
ORDERED = INTEGER | DECIMAL | DATES | {"time"}  # facet stats (min, max) make sense for these
_COMPLEMENT = {"=": "!=", "!=": "=", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_NUMERIC_TEXT = re.compile(r"\s*-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_ENUM_VALUE = re.compile(r"'((?:[^']|'')*)'")


class FilterError(ValueError):
    """The filter cannot run against a table's columns (a 400 that names the column and the value)."""

    def __init__(self, message: str, column: str, value: str | None = None):
        super().__init__(message)
        self.message = message
        self.column = column
        self.value = value


class MissingColumn(Exception):
    def __init__(self, column: f.Column):
        super().__init__(str(column))
        self.column = column


def resolve(table: TableSchema, column: f.Column) -> str | None:
    """The schema's spelling of `column` in `table` (case-insensitive), or None when the reference is to
    another table. :raise MissingColumn: a bare name the table lacks. :raise FilterError: `this.missing`."""
    if column.table is not None and column.table.lower() != table.name.lower():
        return None
    if column.name in table.columns:
        return column.name
    lowered = {c.lower(): c for c in table.columns}
    found = lowered.get(column.name.lower())
    if found is not None:
        return found
    if column.table is None:
        raise MissingColumn(column)
    raise FilterError(f"table {table.name!r} has no column {column.name!r}", str(column))


def resolve_quietly(table: TableSchema, column: f.Column) -> str | None:
    """`resolve`, None for a column the table lacks or a reference to another table."""
    try:
        return resolve(table, column)
    except (MissingColumn, FilterError):
        return None


@dataclass(frozen=True)
class Clause:
    """A WHERE fragment with its parameters, or a constant (`sql` None): every row (True) or none (False)."""

    sql: str | None
    params: tuple = ()
    constant: bool = True

    @property
    def never(self) -> bool:
        return self.sql is None and not self.constant


ALWAYS = Clause(None, (), True)
NEVER = Clause(None, (), False)


def where(node: f.Node | None, table: TableSchema) -> Clause:
    """`node` for `table`'s rows. :raise MissingColumn: a bare column it lacks. :raise FilterError: a value
    that does not fit its column, a column that cannot be filtered."""
    if node is None:
        return ALWAYS
    if isinstance(node, f.AllOf | f.AnyOf):
        parts = [where(p, table) for p in node.parts]
        every = isinstance(node, f.AllOf)
        if any(p.sql is None and p.constant != every for p in parts):  # a False in AND, a True in OR
            return NEVER if every else ALWAYS
        live = [p for p in parts if p.sql is not None]
        if not live:
            return ALWAYS if every else NEVER
        joiner = " AND " if every else " OR "
        return Clause(joiner.join(f"({p.sql})" for p in live), tuple(v for p in live for v in p.params))
    return _condition(node, table)


def _null_holds(node: f.Condition) -> bool:
    """Whether the condition holds for a row whose column is NULL (or absent from its table)."""
    if isinstance(node, f.Compare):
        return (node.op == "!=") != node.negated
    if isinstance(node, f.IsNull):
        return not node.negated
    return node.negated  # Between, InList: only their complements hold


def _condition(node: f.Condition, table: TableSchema) -> Clause:
    name = resolve(table, node.column)
    if name is None:
        return ALWAYS if _null_holds(node) else NEVER
    column, data_type = ident(name), table.columns[name]
    if isinstance(node, f.IsNull):
        return Clause(f"{column} IS {'NOT ' if node.negated else ''}NULL")
    if isinstance(node, f.Compare):
        op = _COMPLEMENT[node.op] if node.negated else node.op
        sql = f"{column} {'<>' if op == '!=' else op} %s"
        params: tuple = (convert(node.value, data_type, table, name, op),)
    elif isinstance(node, f.Between):
        low = convert(node.low, data_type, table, name, ">=")
        high = convert(node.high, data_type, table, name, "<=")
        sql, params = f"{column} {'NOT ' if node.negated else ''}BETWEEN %s AND %s", (low, high)
    else:
        params = tuple(convert(v, data_type, table, name, "=") for v in node.values)
        sql = f"{column} {'NOT ' if node.negated else ''}IN ({', '.join(['%s'] * len(params))})"
    return Clause(f"({sql} OR {column} IS NULL)" if _null_holds(node) else sql, params)


def convert(value: f.Value, data_type: str, table: TableSchema, column: str, op: str = "="):
    """`value` as a parameter for a column of `data_type`. :raise FilterError: it does not fit."""

    def unfit(why: str) -> FilterError:
        message = f"{value} does not fit column {table.name}.{column} ({data_type}): {why}"
        return FilterError(message, column, str(value))

    raw = value.value
    if data_type in INTEGER | DECIMAL:
        if isinstance(raw, bool):
            return int(raw)
        text = value.text if isinstance(raw, int | float) else str(raw)
        if not _NUMERIC_TEXT.fullmatch(text):
            raise unfit("not a number")
        number = decimal.Decimal(text.strip())
        return int(number) if number == number.to_integral_value() and data_type in INTEGER else number
    if data_type in DATES:
        if not isinstance(raw, str):
            raise unfit('dates are ISO strings, as in "2026-12-06" or "2026-12-06T10:30:00"')
        try:
            if data_type == "date" and len(raw.strip()) == 10:
                return dt.date.fromisoformat(raw.strip())
            moment = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            raise unfit("not an ISO date or date-time") from None
        if moment.tzinfo is not None:  # compared as UTC, which is how Altus 4 reads stored times
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        return moment
    if data_type == "time":
        try:
            return dt.time.fromisoformat(str(raw)).isoformat()
        except ValueError:
            raise unfit("not a time (HH:MM:SS)") from None
    if data_type in STRINGS or data_type in BINARY:
        text = ("true" if raw else "false") if isinstance(raw, bool) else (raw if isinstance(raw, str) else value.text)
        if data_type == "enum" and op in ("=", "!="):
            allowed = enum_values(table, column)
            if allowed and text.lower() not in {a.lower() for a in allowed}:
                shown = ", ".join(repr(a) for a in allowed[:20])
                raise unfit(f"not one of the ENUM's values ({shown})")
        return text.encode() if data_type in BINARY else text
    raise FilterError(f"column {table.name}.{column} ({data_type}) cannot be filtered", column, str(value))


def enum_values(table: TableSchema, column: str) -> list[str]:
    """An ENUM column's values, from its full type (`enum('a','b')`); [] when the schema predates it."""
    full = table.column_types.get(column, "")
    return [v.replace("''", "'") for v in _ENUM_VALUE.findall(full)] if full.lower().startswith("enum(") else []
