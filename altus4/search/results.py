"""Turning rows into results: comparable scores, the columns that matched, snippets, JSON-safe data."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import functools
import html
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from altus4.search.plan import SCORE, TOTAL, TableQuery

MAX_TEXT = 1000
SNIPPET_RADIUS = 80


def term_pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive regex for all terms: words whole, `pre*` as a prefix, phrases across spaces."""
    parts = []
    for term in terms:
        if term.endswith("*"):
            parts.append(re.escape(term[:-1]) + r"\w*")
        else:
            words = term.split()
            parts.append(r"\W+".join(re.escape(w) for w in words) + r"\b")
    if not parts:
        return None
    return re.compile(r"\b(?:" + "|".join(sorted(parts, key=len, reverse=True)) + ")", re.IGNORECASE | re.UNICODE)


_AS_IS = frozenset({str, int, float, bool, type(None)})


def json_value(value: Any) -> Any:
    if type(value) in _AS_IS:  # most columns: checked first, as every value of every page row comes here
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)[:MAX_TEXT]).decode()
    if isinstance(value, set):
        return sorted(value)
    return value


def snippet(text: str, pattern: re.Pattern[str] | None) -> str:
    """About 160 characters around the first match, HTML-escaped, matches wrapped in <mark>."""
    match = pattern.search(text) if pattern else None
    if pattern is None or match is None:
        cut = text[: SNIPPET_RADIUS * 2]
        return html.escape(cut) + ("…" if len(text) > len(cut) else "")
    start = max(0, match.start() - SNIPPET_RADIUS)
    end = min(len(text), match.end() + SNIPPET_RADIUS)
    if start > 0:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < match.start() else start
    if end < len(text):
        space = text.rfind(" ", match.end(), end)
        end = space if space > match.end() else end
    window = text[start:end]
    out, last = [], 0
    for m in pattern.finditer(window):
        out.append(html.escape(window[last : m.start()]))
        out.append(f"<mark>{html.escape(m.group(0))}</mark>")
        last = m.end()
    out.append(html.escape(window[last:]))
    return ("…" if start > 0 else "") + "".join(out) + ("…" if end < len(text) else "")


@dataclass(slots=True)  # hundreds made per uncached search
class Hit:
    database: str
    database_order: int
    table: str
    position: int  # rank within its table's ordered result
    raw_score: float
    score: float  # normalised to [0, 1], comparable across tables
    row: dict[str, Any]
    query: TableQuery
    segment: int = 0  # BM25 ranking: 0 for the re-scored window, 1 for MySQL's order beyond it

    def sort_key(self) -> tuple:
        return (self.segment, -self.score, self.database_order, self.table, self.position)


def normalise(rows: list[dict[str, Any]], q: TableQuery, like_predicates: int) -> list[float]:
    """FULLTEXT: score / the table's best score (the first row, the same on every page), so each table's best
    match is 1.0. LIKE: the share of (term, column) predicates that matched."""
    raws = [float(r[SCORE] or 0) for r in rows]
    if not raws:
        return []
    if q.strategy == "like":
        return [min(1.0, r / max(1, like_predicates)) for r in raws]
    top = raws[0] or 1.0
    return [r / top for r in raws]


def row_key(row: dict[str, Any], key: tuple[str, ...]) -> str:
    """A row's id in results and in the vector index: its primary key value(s), ':'-joined."""
    return ":".join(str(json_value(row[k])) for k in key)


def result_id(database: str, table: str, key: str) -> str:
    """Unique in a response and stable across pages: `<database id>/<table, %-encoded>/<row key>`."""
    return f"{database}/{_quoted(table)}/{key}"


@functools.lru_cache(maxsize=4096)
def _quoted(table: str) -> str:
    return quote(table, safe="")


def render(hit: Hit, pattern: re.Pattern[str] | None, database_name: str) -> dict[str, Any]:
    row = hit.row
    data, truncated = {}, []
    for column, value in row.items():
        if column == SCORE or column == TOTAL:
            continue
        value = json_value(value)
        if type(value) is str and len(value) > MAX_TEXT:
            value = value[:MAX_TEXT] + "…"
            truncated.append(column)
        data[column] = value
    texts = {c: str(row[c]) for c in hit.query.searched_columns if isinstance(row.get(c), (str, bytes)) and row[c]}
    counts = {c: len(pattern.findall(text)) for c, text in texts.items()} if pattern else {}
    matched = [c for c in texts if counts.get(c)]
    # the snippet comes from the column where the terms occur most (ties: the longer text)
    best = max(matched, key=lambda c: (counts[c], len(texts[c])), default=None)
    source = texts[best] if best else next(iter(texts.values()), "")
    key = row_key(row, hit.query.key) if hit.query.key else str(hit.position)
    result = {
        "id": result_id(hit.database, hit.table, key),
        "rowId": key,
        "database": hit.database,
        "databaseName": database_name,
        "table": hit.table,
        "relevanceScore": round(hit.score, 6),
        "matchedColumns": matched,
        "data": data,
        "snippet": snippet(source, pattern),
        "categories": [hit.table],  # the page's categories are its tables, unless the AI names topics
        "matchStrategy": hit.query.strategy,
    }
    if truncated:
        result["truncatedColumns"] = truncated
    return result
