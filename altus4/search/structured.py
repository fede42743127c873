"""What a search narrows and orders by, table by table: the filter (the request's, and a tenant token's
rule), `sort`, `facets` and browse (an empty query).

`structure` parses the request's parts once (a malformed one is a 400 before any database is asked);
`plan_tables` turns them into each table's WHERE clause and ORDER BY, leaves out the tables a filter or
sort cannot apply to (saying so in `warnings`), and refuses what no searched table can answer: a column
none has, a table the filter names that is not searched, sort values that cannot be compared across the
tables, a token that does not reach the databases or tables asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from altus4.db.schema import DatabaseSchema, TableSchema
from altus4.errors import Forbidden, ValidationFailed
from altus4.search import conditions, facets, ordering
from altus4.search import filters as f
from altus4.search import plan as planner

ANY_DATABASE = "*"


@dataclass(frozen=True)
class Rule:
    """A tenant token's search rule for one database (or every one, `*`)."""

    filter: str | None = None
    tables: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Scope:
    """What a tenant token may search: its rules by database id or `*` (a specific one overrides `*`)."""

    rules: tuple[tuple[str, Rule], ...]

    def rule(self, database_id: str) -> Rule | None:
        found = dict(self.rules)
        return found.get(database_id.lower(), found.get(ANY_DATABASE))

    def databases(self, owned: list[str], asked: list[str] | None) -> list[str]:
        """The databases a search under this scope covers. :raise Forbidden: it asks for one the token does
        not reach."""
        reachable = [d for d in owned if self.rule(d) is not None]
        if asked is None:
            return reachable
        outside = [d for d in asked if d.lower() not in {r.lower() for r in reachable}]
        if outside:
            raise Forbidden(
                "This tenant token does not reach the databases asked for",
                details={"databases": outside},
            )
        return list(asked)


class BadRule(ValueError):
    """A tenant token's rule that cannot be applied (its filter is malformed)."""


def scope_of(rules: Mapping[str, Mapping[str, Any]]) -> Scope:
    """A tenant token's verified rules as a search scope. :raise BadRule: a rule's filter is malformed."""
    out = []
    for database, rule in sorted(rules.items()):
        try:
            text = f.filter_text(rule.get("filter"))
            if text is not None and not isinstance(text, str):
                raise ValueError("a filter is a string or Meilisearch's array form")
            if text:
                f.parse(text)
        except (ValueError, f.FilterSyntaxError) as exc:
            raise BadRule(f"the rule for {database!r} has a malformed filter: {exc}") from None
        tables = rule.get("tables")
        out.append((database, Rule(text or None, tuple(tables) if tables is not None else None)))
    return Scope(tuple(out))


@dataclass(frozen=True)
class Structure:
    filter: f.Node | None
    sort: tuple[ordering.SortKey, ...]  # empty: relevance order
    facets: tuple[facets.Facet, ...]
    browse: bool  # an empty query: every row the filter lets through, no MATCH
    scope: Scope | None

    def filter_for(self, database_id: str) -> f.Node | None:
        """The request's filter and, under a tenant token, its rule for the database: both must hold."""
        rule = self.scope.rule(database_id) if self.scope else None
        return f.both(parse_filter(rule.filter, "token") if rule and rule.filter else None, self.filter)


def parse_filter(text: str | None, field_name: str = "filter") -> f.Node | None:
    """:raise ValidationFailed: INVALID_FILTER, with the position."""
    if not text:
        return None
    try:
        return f.parse(text)
    except f.FilterSyntaxError as exc:
        raise _invalid(f"Malformed filter: {exc}", field_name, "filter_syntax", exc.message, exc.position + 1) from None


def _invalid(message: str, field_name: str, code: str, detail: str, position: int | None = None) -> ValidationFailed:
    item: dict[str, Any] = {"field": field_name, "code": code, "message": detail}
    if position is not None:
        item["position"] = position
    return ValidationFailed(message, code="INVALID_FILTER", details=[item])


@functools.lru_cache(maxsize=2048)
def structure(
    filter_text: str | None,
    sort: tuple[str, ...] | None,
    facet_names: tuple[str, ...] | None,
    query: str,
    scope: Scope | None,
) -> Structure:
    """:raise ValidationFailed: a malformed filter, sort key or facet name; an empty query without a filter
    or sort."""
    node = parse_filter(filter_text)
    try:
        keys = ordering.parse(tuple(sort or ()))
    except ordering.SortError as exc:
        raise ValidationFailed(
            exc.message, code="INVALID_SORT", details=[{"field": "sort", "code": "sort_key", "message": exc.message}]
        ) from None
    if keys == (ordering.SortKey(None, True),):
        keys = ()  # `_score:desc` alone is relevance order
    try:
        wanted = facets.parse(tuple(facet_names or ()))
    except facets.FacetError as exc:
        raise ValidationFailed(
            exc.message, details=[{"field": "facets", "code": "facet", "message": exc.message}]
        ) from None
    browse = not query.strip()
    if browse and node is None and not keys and scope is None:
        raise ValidationFailed(
            "An empty query needs a filter or a sort (browse mode)",
            details=[{"field": "query", "code": "empty", "message": "give a query, or a filter or sort to browse"}],
        )
    return Structure(node, keys, wanted, browse, scope)


@dataclass
class TablePlan:
    where: conditions.Clause = conditions.ALWAYS
    order: ordering.TableOrder | None = None
    facets: list[tuple[facets.Facet, str, str]] = field(default_factory=list)  # (facet, column, its type)


@dataclass
class Planned:
    """Every table to run, with its plan; what was left out, as warnings."""

    jobs: list[tuple[dict[str, Any], planner.TableQuery, TablePlan]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def tables_for(
    schema: DatabaseSchema, structure_: Structure, database_id: str, tables: list[str] | None, columns: list[str] | None
) -> list[planner.TableQuery]:
    """The database's tables to search: FULLTEXT-indexed ones, or those named (any table: a LIKE fallback, or
    browse); under a tenant token, only the tables its rule names. Browse without names keeps to the
    FULLTEXT-indexed tables, the search surface a user made: other tables are read only when named."""
    rule = structure_.scope.rule(database_id) if structure_.scope else None
    if rule is not None and rule.tables is not None:
        allowed = {t.lower() for t in rule.tables}
        tables = [t for t in (tables or rule.tables) if t.lower() in allowed]
        if not tables:
            return []
    if structure_.browse:
        chosen = planner.named(schema, tables) if tables else [t for t in schema.tables.values() if t.fulltext_indexes]
        return [planner.browse_table(t) for t in chosen]
    return planner.plan(schema, tables or [], columns or [])


def plan_tables(
    rows: list[dict[str, Any]],
    schemas: Mapping[str, DatabaseSchema],
    structure_: Structure,
    tables: list[str] | None,
    columns: list[str] | None,
) -> Planned:
    """:raise ValidationFailed: a column no searched table has, a table the filter names that is not
    searched, a value that does not fit its column, sort values of different kinds across tables.
    :raise Forbidden: a tenant token whose rules reach none of the tables asked for."""
    planned = Planned()
    missing: dict[str, list[str]] = {}  # "filter column x" / "sort column x" -> tables left out
    seen_tables: set[str] = set()
    resolved: set[str] = set()  # column references some searched table had
    orders: list[tuple[TableSchema, ordering.TableOrder]] = []
    for row in rows:
        schema = schemas.get(row["id"])
        if schema is None:
            continue
        node = structure_.filter_for(row["id"])
        for q in tables_for(schema, structure_, row["id"], tables, columns):
            table = schema.tables[q.table]
            seen_tables.add(table.name.lower())
            item = _plan_table(table, node, structure_, missing, resolved, f"{row['name']}.{table.name}")
            if item is None:
                continue
            if item.order is not None:
                orders.append((table, item.order))
            planned.jobs.append((row, q, item))
    _check_references(structure_, rows, seen_tables, resolved, planned, missing)
    try:
        ordering.check_comparable(structure_.sort, orders)
    except ordering.SortError as exc:
        raise ValidationFailed(
            exc.message,
            code="INVALID_SORT",
            details=[{"field": "sort", "code": "incomparable", "message": exc.message}],
        ) from None
    for what, left_out in missing.items():
        code = "FILTER_COLUMN_MISSING" if what.startswith("filter") else "SORT_COLUMN_MISSING"
        planned.warnings.append(f"{code}: left out of the search, without {what}: {', '.join(sorted(left_out))}")
    return planned


def _plan_table(
    table: TableSchema, node: f.Node | None, structure_: Structure, missing, resolved, where: str
) -> TablePlan | None:
    """The table's plan; None (and `missing` says why, under `where`: connection.table) when it lacks a bare
    column the filter or sort names."""
    item = TablePlan()
    try:
        item.where = conditions.where(node, table)
    except conditions.MissingColumn as exc:
        missing.setdefault(f"filter column {exc.column}", []).append(where)
        return None
    except conditions.FilterError as exc:
        raise ValidationFailed(
            f"Invalid filter: {exc.message}",
            code="INVALID_FILTER",
            details=[
                {"field": "filter", "code": "value", "message": exc.message, "column": exc.column, "value": exc.value}
            ],
        ) from None
    for column in f.columns(node) if node else []:
        if conditions.resolve_quietly(table, column):
            resolved.add(f"filter:{column}")
    if structure_.sort:
        try:
            item.order = ordering.for_table(structure_.sort, table)
        except conditions.MissingColumn as exc:
            missing.setdefault(f"sort column {exc.column}", []).append(where)
            return None
        except ordering.SortError as exc:
            raise ValidationFailed(
                exc.message,
                code="INVALID_SORT",
                details=[{"field": "sort", "code": "sort_key", "message": exc.message}],
            ) from None
        for key in structure_.sort:
            if key.column is not None and conditions.resolve_quietly(table, key.column):
                resolved.add(f"sort:{key.column}")
    try:
        item.facets = facets.for_table(structure_.facets, table)
    except facets.FacetError as exc:
        raise ValidationFailed(
            exc.message, details=[{"field": "facets", "code": "facet_type", "message": exc.message}]
        ) from None
    resolved.update(f"facet:{facet.label}" for facet, _, _ in item.facets)
    return item  # a table the filter empties (`where.never`) runs no statement and counts 0


def _check_references(
    structure_: Structure, rows, seen_tables: set[str], resolved: set[str], planned: Planned, missing
) -> None:
    """Every column the request names must be in some searched table; every table it names, searched."""
    references = [("filter", c) for c in (f.columns(structure_.filter) if structure_.filter else [])]
    references += [("sort", k.column) for k in structure_.sort if k.column is not None]
    for kind, column in references:
        if column.table is not None and column.table.lower() not in seen_tables:
            raise _unknown(kind, f"{column} names table {column.table!r}, which is not searched", str(column))
        if f"{kind}:{column}" not in resolved:
            raise _unknown(kind, f"no searched table has column {column.name!r}", str(column))
    for facet in structure_.facets:
        if f"facet:{facet.label}" not in resolved:
            raise ValidationFailed(
                f"No searched table has the facet column {facet.label!r}",
                details=[{"field": "facets", "code": "unknown_column", "message": facet.label}],
            )
    if not planned.jobs and rows and (missing or structure_.scope):
        if structure_.scope and not missing:
            raise Forbidden("This tenant token reaches none of the tables asked for")
        what = ", ".join(sorted(missing))
        raise _unknown("filter", f"every searched table was left out, without {what}", what)


def _unknown(kind: str, detail: str, column: str) -> ValidationFailed:
    code = "INVALID_FILTER" if kind == "filter" else "INVALID_SORT"
    return ValidationFailed(
        f"Invalid {kind}: {detail}",
        code=code,
        details=[{"field": kind, "code": "unknown_column", "message": detail, "column": column}],
    )
