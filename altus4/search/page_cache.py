"""The search cache's entries: a page stored so that a hit is served without decoding its results.

An entry is the page's small part (the connection versions it answers for and every field but `results`)
as JSON, a NUL byte (never found in JSON text), then the results as JSON. A hit decodes only the small part
and puts the results back as an `orjson.Fragment`, which the response encoder copies as they are: profiled,
decoding a page of results and encoding it again was most of a cached search's CPU.
"""

from __future__ import annotations

from typing import Any

import orjson

_SEPARATOR = "\x00"


def pack(versions: list, data: dict[str, Any]) -> bytes:
    head = {"versions": versions, "data": {**data, "results": None}}  # keeps `results` in its place
    return orjson.dumps(head) + _SEPARATOR.encode() + orjson.dumps(data["results"])


def unpack(entry: str, versions: list, decoded: bool) -> dict[str, Any] | None:
    """The page stored in `entry` if it was computed from these connection `versions`, else None; its
    results as a Fragment unless `decoded` (for callers that read them)."""
    head, _, results = entry.partition(_SEPARATOR)
    stored = orjson.loads(head)
    if stored["versions"] != versions:
        return None
    data: dict[str, Any] = stored["data"]
    if results:
        data["results"] = orjson.loads(results) if decoded else orjson.Fragment(results)
    return data  # an entry of an earlier version (one JSON document) holds its results already
