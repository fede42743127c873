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


@dataclass(frozen=True)
class Terms:
    """The query's terms as one regex, twice: `lower` (terms lower-cased, case-sensitive) for text lower-cased
    once, and `anycase` (IGNORECASE) for the rare text whose lower case changes its length, where offsets
    would not map back. Measured on anchor-shop's rows: IGNORECASE's findall 4.4 µs a text, lower() and the
    case-sensitive one 2.3 µs; rendering runs both on every searched column of every row on the page."""

    lower: re.Pattern[str]
    anycase: re.Pattern[str]

    def subject(self, text: str) -> tuple[str, re.Pattern[str]]:
        """The text to match in, with its regex: match offsets in it are offsets in `text`."""
        low = text.lower()
        return (low, self.lower) if len(low) == len(text) else (text, self.anycase)


def term_pattern(terms: tuple[str, ...]) -> Terms | None:
    """The terms as a regex: words whole, `pre*` as a prefix, phrases across spaces (None: no terms)."""
    if not terms:
        return None
    lowered = _alternatives(tuple(t.lower() for t in terms))
    return Terms(re.compile(lowered, re.UNICODE), re.compile(_alternatives(terms), re.IGNORECASE | re.UNICODE))


def _alternatives(terms: tuple[str, ...]) -> str:
    parts = []
    for term in terms:
        if term.endswith("*"):
            parts.append(re.escape(term[:-1]) + r"\w*")
        else:
            words = term.split()
            parts.append(r"\W+".join(re.escape(w) for w in words) + r"\b")
    return r"\b(?:" + "|".join(sorted(parts, key=len, reverse=True)) + ")"


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


def snippet(text: str, terms: Terms | None) -> str:
    """About 160 characters around the first match, HTML-escaped, matches wrapped in <mark>."""
    subject, pattern = terms.subject(text) if terms else (text, None)
    match = pattern.search(subject) if pattern else None
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
    for m in pattern.finditer(subject[start:end]):
        out.append(html.escape(window[last : m.start()]))
        out.append(f"<mark>{html.escape(window[m.start() : m.end()])}</mark>")
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


def normalise(rows: list[dict[str, Any]], q: TableQuery, like_predicates: int, best: bool = False) -> list[float]:
    """FULLTEXT: score / the table's best score (the first row, the same on every page; with `best`, rows
    sorted by columns, the best of those read), so each table's best match is 1.0. LIKE: the share of (term,
    column) predicates that matched. Browse: 0 (no query)."""
    raws = [float(r[SCORE] or 0) for r in rows]
    if not raws or q.browse:
        return [0.0] * len(raws)
    if q.strategy == "like":
        return [min(1.0, r / max(1, like_predicates)) for r in raws]
    top = (max(raws) if best else raws[0]) or 1.0
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


def render(hit: Hit, terms: Terms | None, database_name: str) -> dict[str, Any]:
    row = hit.row
    data, truncated, whole = {}, [], {}
    for column, value in row.items():
        if column == SCORE or column == TOTAL:
            continue
        value = json_value(value)
        if type(value) is str and len(value) > MAX_TEXT:
            whole[column] = value
            value = value[:MAX_TEXT] + "…"
            truncated.append(column)
        data[column] = value
    # the searched columns' text as sent (bytes decoded), whole
    texts = {c: t for c in hit.query.searched_columns if type(t := whole.get(c, data.get(c))) is str and t}
    counts = {}
    if terms:
        for c, text in texts.items():
            subject, pattern = terms.subject(text)
            counts[c] = len(pattern.findall(subject))
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
        "snippet": snippet(source, terms),
        "categories": [hit.table],  # the page's categories are its tables, unless the AI names topics
        "matchStrategy": hit.query.strategy,
    }
    if truncated:
        result["truncatedColumns"] = truncated
    return result
