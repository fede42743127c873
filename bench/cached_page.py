"""CPU per cache hit of the search page's own encoding work: decode the stored page and encode it again (the
way before altus4/search/page_cache.py) against decoding only its small part and splicing the stored results
(`orjson.Fragment`). Synthetic page shaped like a real one (20 products, 300-character descriptions).

    .venv/bin/python bench/cached_page.py
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from altus4.search import page_cache  # noqa: E402

WORDS = "wireless headphones noise cancelling battery bluetooth comfort travel bass studio".split()


def page(results: int = 20) -> tuple[list, dict]:
    database = str(uuid.uuid4())
    rows = []
    for i in range(results):
        text = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(45))[:300]
        rows.append(
            {
                "id": f"{database}/products/{i}",
                "rowId": str(i),
                "database": database,
                "databaseName": "shop",
                "table": "products",
                "relevanceScore": 0.123456,
                "matchedColumns": ["name", "description"],
                "data": {"id": i, "name": f"Headphones {i}", "description": text, "category": "audio", "price": "9.99"},
                "snippet": text[:150],
                "categories": ["products"],
                "matchStrategy": "fulltext",
            }
        )
    data = {"results": rows, "totalCount": 340, "page": 1, "limit": 20, "databases": [{"id": database}]}
    return [[database, 1]], data


def per_hit_us(serve, n: int = 20000) -> float:
    start = time.process_time()
    for _ in range(n):
        serve()
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    versions, data = page()
    whole = orjson.dumps({"versions": versions, "data": data}).decode()
    split = page_cache.pack(versions, data).decode()
    meta = {"timestamp": "2026-12-02T00:00:00.000Z", "requestId": "r", "version": "1.0.0"}

    def before() -> bytes:
        entry = orjson.loads(whole)
        body = entry["data"]
        body["cached"] = True
        return orjson.dumps({"success": True, "data": body, "meta": meta})

    def after() -> bytes:
        body = page_cache.unpack(split, versions, decoded=False)
        body["cached"] = True
        return orjson.dumps({"success": True, "data": body, "meta": meta})

    assert orjson.loads(before()) == orjson.loads(after())
    print(
        f"page {len(whole):,} bytes; CPU per hit: decode + encode {per_hit_us(before):.1f} µs,"
        f" splice {per_hit_us(after):.1f} µs"
    )


if __name__ == "__main__":
    main()
