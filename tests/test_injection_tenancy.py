"""Injection and tenancy regressions: hostile text in every place a user controls, and every id-taking
operation tried with another tenant's credentials.

The target database holds a canary table that no search may name, read or change: after the corpus, its
rows, its checksum and the list of tables are what they were, no answer carries its secret, none is a 5xx
or leaks driver text, and none waited on an injected SLEEP.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest
from conftest import connect_admin, fresh_fulltext_table

CANARY_DB = "altus4_test_canary"
SECRET = "canary-secret-5f0c2e"
PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1 -- ",
    '" OR ""="',
    "x') OR 1=1 #",
    "'; DROP TABLE canary; --",
    "`; DROP TABLE canary; --",
    "docs` UNION SELECT secret FROM canary --",
    "') UNION SELECT secret, secret FROM canary -- ",
    "' AND SLEEP(3) -- ",
    "1; SELECT SLEEP(3)",
    "' OR BENCHMARK(50000000, MD5(1)) -- ",
    "%s%s%s%d%(x)s",
    "\\'; DELETE FROM canary; --",
    "*/ DELETE FROM canary /*",
    "+canary -docs (secret",
    "\x00' OR 1=1",
    "ʼ OR ʼ1ʼ=ʼ1",  # lookalike quotes
    "${jndi:ldap://127.0.0.1/x}",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "a" * 600,
    "%",
    "_",
    "\\",
    "NULL",
]
# "1064" alone would match random request ids: the driver says "(1064," and we would say "error 1064"
LEAKS = (SECRET, "Traceback", "pymysql", "You have an error in your SQL syntax", "(1064,", "error 1064")


@pytest.fixture(scope="module")
def canary(settings):
    fresh_fulltext_table(
        settings,
        CANARY_DB,
        "docs",
        "CREATE TABLE docs (id INT PRIMARY KEY, title VARCHAR(100), body TEXT, FULLTEXT KEY ft (title, body))"
        " ENGINE=InnoDB",
        "INSERT INTO docs VALUES (%s, %s, %s)",
        [(i, f"doc {i}", f"ordinary searchable words number {i}") for i in range(1, 9)],
    )
    conn = connect_admin(settings, CANARY_DB)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS canary")
        cur.execute("CREATE TABLE canary (id INT PRIMARY KEY, secret VARCHAR(64)) ENGINE=InnoDB")
        cur.execute("INSERT INTO canary VALUES (1, %s)", (SECRET,))
    conn.close()
    return CANARY_DB


def _state(settings) -> tuple:
    conn = connect_admin(settings, CANARY_DB)
    with conn.cursor() as cur:
        cur.execute("SELECT id, secret FROM canary ORDER BY id")
        rows = cur.fetchall()
        cur.execute("CHECKSUM TABLE canary, docs")
        sums = cur.fetchall()
        cur.execute("SHOW TABLES")
        tables = cur.fetchall()
    conn.close()
    return rows, sums, tables


def _backticked(name: str) -> str:
    """`name` as a quoted column in the filter language (a payload with backticks stays one name)."""
    return "`" + name.replace("`", "``") + "`"


def _placements(connection_id: str, key_id: str):
    """(method, path, body or None, credential) for each payload `p`: every place a user's text goes."""
    q = urllib.parse.quote
    return [
        lambda p: ("POST", "/api/v1/search", {"query": p}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": p, "searchMode": "boolean"}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": p, "searchMode": "semantic"}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": "ordinary", "tables": [p]}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": "ordinary", "tables": ["docs"], "columns": [p]}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": "ordinary", "databases": [p]}, "key"),
        # structured search: values, column names, facet names, sort keys and the filter text itself
        lambda p: ("POST", "/api/v1/search", {"query": "ordinary", "filter": f"title = {json.dumps(p)}"}, "key"),
        lambda p: (
            "POST",
            "/api/v1/search",
            {"query": "ordinary", "filter": f"title IN [{json.dumps(p)}, 'x']"},
            "key",
        ),
        lambda p: ("POST", "/api/v1/search", {"query": "", "filter": f"id > {json.dumps(p)}"}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": "ordinary", "filter": _backticked(p) + " = 1"}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": "ordinary", "filter": p}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": "ordinary", "facets": [p]}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": "ordinary", "facets": [_backticked(p)]}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": "ordinary", "sort": [f"{p}:asc"]}, "key"),
        lambda p: ("POST", "/api/v1/search", {"query": "", "sort": [f"{_backticked(p)}:desc"]}, "key"),
        lambda p: ("GET", f"/api/v1/search/suggestions?query=ord&filter={q('title = ' + json.dumps(p))}", None, "key"),
        lambda p: ("GET", f"/api/v1/search/suggestions?query={q(p)}", None, "key"),
        lambda p: ("GET", f"/api/v1/search/suggestions?query=ord&tables={q(p)}", None, "key"),
        lambda p: ("POST", "/api/v1/search/analyze", {"query": p, "databases": [connection_id]}, "key"),
        lambda p: ("GET", f"/api/v1/search/history?offset={q(p)}&limit={q(p)}", None, "key"),
        lambda p: ("GET", f"/api/v1/analytics/popular-queries?period={q(p)}&endDate={q(p)}", None, "jwt"),
        lambda p: ("GET", f"/api/v1/keys/{q(p)}", None, "jwt"),
        lambda p: ("GET", f"/api/v1/databases/{q(p)}/schema", None, "jwt"),
        lambda p: ("PUT", f"/api/v1/keys/{key_id}", {"name": f"key {p}"}, "jwt"),
        lambda p: ("PUT", "/api/v1/auth/profile", {"name": f"name {p}"}, "jwt"),
        lambda p: (
            "POST",
            "/api/v1/databases",
            {"name": p, "host": "127.0.0.1", "database": p, "username": p, "password": p},
            "jwt",
        ),
        lambda p: ("PUT", f"/api/v1/databases/{connection_id}", {"name": f"canary {p}"}, "jwt"),
    ]


def test_hostile_text_anywhere_changes_nothing_and_leaks_nothing(user, client, settings, canary):
    connection = user.connect_database(settings, canary)
    secret, key = user.create_key(rateLimitTier="enterprise")
    credentials = {"key": {"Authorization": f"Bearer {secret}"}, "jwt": user.headers}
    before = _state(settings)
    sent, slowest = 0, 0.0
    for place in _placements(connection["id"], key["id"]):
        for payload in PAYLOADS:
            method, path, body, credential = place(payload)
            started = time.perf_counter()
            r = client.open(path, method=method, json=body, headers=credentials[credential])
            slowest = max(slowest, time.perf_counter() - started)
            sent += 1
            text = r.get_data(as_text=True)
            assert r.status_code < 500, (method, path, body, text[:300])
            assert r.is_json, (method, path)
            assert not [leak for leak in LEAKS if leak in text], (method, path, body, text[:300])
    assert sent == len(PAYLOADS) * len(_placements("", ""))
    assert slowest < 2.5, f"a request took {slowest:.2f}s: did an injected SLEEP run?"
    assert _state(settings) == before
    # the connection still works, and the canary was never a search target (it has no FULLTEXT index)
    r = client.post("/api/v1/search", json={"query": "ordinary"}, headers=credentials["key"])
    assert r.status_code == 200 and {h["table"] for h in r.get_json()["data"]["results"]} <= {"docs"}


def test_every_id_taking_operation_refuses_another_tenant(make_user, settings, canary):
    alice, bob = make_user(), make_user()
    connection = alice.connect_database(settings, canary)
    alice_secret, key = alice.create_key()
    alice_key = {"Authorization": f"Bearer {alice_secret}"}
    marker = "alicesprivatequery"
    assert (
        alice.client.post("/api/v1/search", json={"query": f"ordinary {marker}"}, headers=alice_key).status_code == 200
    )
    bob_secret, _ = bob.create_key(permissions=["search", "analytics", "admin"])
    bob_key = {"Authorization": f"Bearer {bob_secret}"}
    k, c = key["id"], connection["id"]
    by_jwt = [
        ("GET", f"/api/v1/keys/{k}", None),
        ("PUT", f"/api/v1/keys/{k}", {"name": "taken over"}),
        ("GET", f"/api/v1/keys/{k}/usage", None),
        ("POST", f"/api/v1/keys/{k}/regenerate", None),
        ("DELETE", f"/api/v1/keys/{k}", None),
        ("GET", f"/api/v1/databases/{c}", None),
        ("PUT", f"/api/v1/databases/{c}", {"name": "taken over"}),
        ("POST", f"/api/v1/databases/{c}/test", None),
        ("GET", f"/api/v1/databases/{c}/schema", None),
        ("DELETE", f"/api/v1/databases/{c}", None),
    ]
    for method, path, body in by_jwt:
        r = bob.call(method, path, json=body)
        assert r.status_code == 404, (method, path, r.get_json())
    by_key = [
        ("POST", "/api/v1/search", {"query": "ordinary", "databases": [c]}),
        ("POST", "/api/v1/search/analyze", {"query": "ordinary", "databases": [c]}),
        ("GET", f"/api/v1/search/suggestions?query=ord&databases={c}", None),
    ]
    for method, path, body in by_key:
        r = bob.client.open(path, method=method, json=body, headers=bob_key)
        assert r.status_code in (400, 404), (method, path, r.get_json())
        assert SECRET not in r.get_data(as_text=True) and "ordinary searchable" not in r.get_data(as_text=True)
    # nothing of Alice's changed, and none of her history shows up in Bob's views
    assert alice.call("GET", f"/api/v1/keys/{k}").get_json()["data"]["apiKey"]["name"] == key["name"]
    assert alice.client.post("/api/v1/search", json={"query": "ordinary"}, headers=alice_key).status_code == 200
    assert alice.call("GET", f"/api/v1/databases/{c}").get_json()["data"]["name"] == connection["name"]
    for path in (
        "/api/v1/analytics/search-history",
        "/api/v1/analytics/popular-queries",
        "/api/v1/analytics/dashboard",
        "/api/v1/search/history",
        "/api/v1/search/suggestions?query=alices",
    ):
        headers = bob_key if path.startswith("/api/v1/search") else bob.headers
        r = bob.client.get(path, headers=headers)
        assert r.status_code == 200 and marker not in r.get_data(as_text=True), path
    assert marker in alice.call("GET", "/api/v1/analytics/search-history").get_data(as_text=True)
