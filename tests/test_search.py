"""POST /api/v1/search against two real connected databases with known rows."""

import pytest
from conftest import fresh_fulltext_table, make_settings, register

from altus4 import create_app
from altus4.search.results import snippet, term_pattern


@pytest.fixture
def searcher(user, settings, targets):
    """A user with both target databases connected and a search key."""
    a = user.connect_database(settings, targets["a"], name="A")
    b = user.connect_database(settings, targets["b"], name="B")
    secret, _ = user.create_key()
    user.dbs = {"a": a["id"], "b": b["id"]}
    user.key_headers = {"Authorization": f"Bearer {secret}"}
    return user


def search(user, **body):
    r = user.client.post("/api/v1/search", json=body, headers=user.key_headers)
    return r, r.get_json()


def hits(data, table=None):
    """(database letter-free id, table, row id) of each result."""
    return [
        (r["database"], r["table"], r["data"]["id"])
        for r in data["data"]["results"]
        if table is None or r["table"] == table
    ]


def kb_ids(user, data, db):
    return [r["data"]["id"] for r in data["data"]["results"] if r["database"] == user.dbs[db] and r["table"] == "kb"]


def test_natural_mode_finds_known_rows_in_both_databases(searcher):
    r, data = search(searcher, query="gevent workers", tables=["kb"])
    assert r.status_code == 200
    assert kb_ids(searcher, data, "a") == [3]
    assert kb_ids(searcher, data, "b") == [2]
    assert data["data"]["totalCount"] == 2 and data["data"]["totalCountExact"] is True
    first = data["data"]["results"][0]
    assert first["relevanceScore"] == 1.0
    assert set(first["matchedColumns"]) <= {"title", "body"} and first["matchedColumns"]
    assert "<mark>" in first["snippet"]
    assert {d["status"] for d in data["data"]["databases"]} == {"ok"}


@pytest.mark.parametrize(
    "query,expected_a",
    [
        ("+mysql +slow", [4]),
        ("mysql -slow", [1, 2]),
        ('"source of truth"', [2]),
        ("optimi*", [5]),
        ("mysql AND explain", [4]),
        ("redis OR gunicorn", [2, 3]),
        ("mysql NOT redis", [1, 4]),
        ("(redis OR gunicorn) AND cache*", [2]),
    ],
)
def test_boolean_operators(searcher, query, expected_a):
    r, data = search(searcher, query=query, searchMode="boolean", tables=["kb"], databases=[searcher.dbs["a"]])
    assert r.status_code == 200, data
    assert sorted(kb_ids(searcher, data, "a")) == expected_a
    assert data["data"]["modeUsed"] == "boolean"


def test_pages_concatenate_to_the_unpaged_list(searcher):
    _, everything = search(
        searcher, query="mysql OR gevent OR redis OR filler", searchMode="boolean", limit=100, tables=["kb"]
    )
    full = hits(everything)
    assert len(full) == everything["data"]["totalCount"] > 10
    assert len(set(full)) == len(full)
    scores = [r["relevanceScore"] for r in everything["data"]["results"]]
    assert scores == sorted(scores, reverse=True)
    paged = []
    for offset in range(0, len(full), 7):
        r, page = search(
            searcher,
            query="mysql OR gevent OR redis OR filler",
            searchMode="boolean",
            limit=7,
            offset=offset,
            tables=["kb"],
        )
        assert page["data"]["page"] == offset // 7 + 1
        paged += hits(page)
    assert paged == full


KEYS_DB = "altus4_test_keys"
KEY_KINDS = {  # the same rows under each kind of key: the planner joins rows back by a primary key only
    "single": "id INT PRIMARY KEY, part INT NOT NULL",
    "composite": "id INT NOT NULL, part INT NOT NULL, PRIMARY KEY (part, id)",
    "none": "id INT NOT NULL, part INT NOT NULL",
}


@pytest.fixture(scope="module")
def keyed_tables(settings):
    words = ["mysql", "gevent", "redis", "search", "replica"]
    rows = [
        (i, i % 3, f"{words[i % 5]} {words[(i * 7) % 5]} note {i}", " ".join([words[i % 5]] * (1 + i % 4)))
        for i in range(1, 61)
    ]
    for kind, columns in KEY_KINDS.items():
        fresh_fulltext_table(
            settings,
            KEYS_DB,
            f"t_{kind}",
            f"CREATE TABLE t_{kind} ({columns}, title VARCHAR(100) NOT NULL, body TEXT NOT NULL,"
            f" FULLTEXT KEY ft (title, body)) ENGINE=InnoDB",
            f"INSERT INTO t_{kind} VALUES (%s, %s, %s, %s)",
            rows,
        )
    return rows


@pytest.mark.parametrize("kind", list(KEY_KINDS))
def test_single_composite_and_no_primary_key_rank_count_and_page_alike(user, settings, keyed_tables, kind):
    db = user.connect_database(settings, KEYS_DB)
    secret, _ = user.create_key()
    headers = {"Authorization": f"Bearer {secret}"}

    def run(**page):
        r = user.client.post(
            "/api/v1/search",
            headers=headers,
            json={"query": "mysql redis", "databases": [db["id"]], "tables": [f"t_{kind}"], **page},
        )
        assert r.status_code == 200, r.get_json()
        return r.get_json()["data"]

    everything = run(limit=100)
    expected = sum(1 for row in keyed_tables if {"mysql", "redis"} & set((row[2] + " " + row[3]).split()))
    assert everything["totalCount"] == len(everything["results"]) == expected
    full = [(r["data"]["id"], r["relevanceScore"]) for r in everything["results"]]
    assert [score for _, score in full] == sorted((score for _, score in full), reverse=True)
    paged = [
        (r["data"]["id"], r["relevanceScore"])
        for offset in range(0, expected, 9)
        for r in run(limit=9, offset=offset)["results"]
    ]
    assert paged == full
    assert run(limit=9, offset=9)["totalCount"] == expected


def test_one_database_down_is_reported_not_fatal(searcher, user):
    down = user.call(
        "POST",
        "/api/v1/databases",
        json={"name": "Down", "host": "127.0.0.1", "port": 1, "database": "x", "username": "u"},
    ).get_json()["data"]
    r, data = search(searcher, query="gevent workers", tables=["kb"])
    assert r.status_code == 200
    statuses = {d["id"]: d for d in data["data"]["databases"]}
    assert statuses[down["id"]]["status"] == "failed" and "127.0.0.1:1" in statuses[down["id"]]["error"]
    assert statuses[searcher.dbs["a"]]["status"] == "ok"
    assert kb_ids(searcher, data, "a") == [3]


def test_all_databases_down_is_a_502(user):
    user.call(
        "POST",
        "/api/v1/databases",
        json={"name": "Down", "host": "127.0.0.1", "port": 1, "database": "x", "username": "u"},
    )
    secret, _ = user.create_key()
    r = user.client.post("/api/v1/search", json={"query": "anything"}, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 502
    body = r.get_json()
    assert body["error"]["code"] == "ALL_DATABASES_FAILED"
    assert body["error"]["details"]["databases"][0]["status"] == "failed"


def test_no_databases_is_a_clear_400(user):
    secret, _ = user.create_key()
    r = user.client.post("/api/v1/search", json={"query": "anything"}, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "NO_DATABASES"


def test_cache_hit_and_invalidation_on_connection_change(searcher):
    _, first = search(searcher, query="sentinel failover", tables=["kb"])
    _, second = search(searcher, query="sentinel failover", tables=["kb"])
    assert first["data"]["cached"] is False and second["data"]["cached"] is True
    assert hits(first) == hits(second)
    searcher.call("PUT", f"/api/v1/databases/{searcher.dbs['b']}", json={"name": "B renamed"})
    _, third = search(searcher, query="sentinel failover", tables=["kb"])
    assert third["data"]["cached"] is False
    assert third["data"]["results"][0]["databaseName"] == "B renamed"


def test_a_cache_hit_is_the_same_page_in_the_same_field_order_with_or_without_analytics(searcher):
    """A hit serves the stored results without decoding them: what the client reads must not change."""
    body = {"query": "gevent workers", "limit": 5}
    first = search(searcher, **body)[1]["data"]
    for include in (False, True, False):
        again = search(searcher, includeAnalytics=include, **body)[1]["data"]
        assert again["cached"] is True
        assert list(again) == list(first) + (["trends"] if include else [])
        assert {k: v for k, v in again.items() if k not in ("cached", "executionTime", "trends", "categories")} == {
            k: v for k, v in first.items() if k not in ("cached", "executionTime", "categories")
        }


def test_search_works_without_redis(migrated, targets):
    app = create_app(make_settings(REDIS_PORT="1"))
    client = app.test_client()
    user = register(client)
    user.connect_database(migrated, targets["a"])
    secret, _ = user.create_key()
    for _ in range(2):
        r = client.post(
            "/api/v1/search", json={"query": "gevent workers"}, headers={"Authorization": f"Bearer {secret}"}
        )
        assert r.status_code == 200 and r.get_json()["data"]["cached"] is False
        assert [x["data"]["id"] for x in r.get_json()["data"]["results"] if x["table"] == "kb"] == [3]
    history = client.get("/api/v1/search/history", headers={"Authorization": f"Bearer {secret}"}).get_json()
    assert history["meta"]["total"] == 2  # recorded straight to MySQL
    app.extensions["altus4"].close()


@pytest.mark.parametrize(
    "body,code,needle",
    [
        ({"query": "x", "tables": ["no_such_table"]}, "UNKNOWN_IDENTIFIER", "no_such_table"),
        ({"query": "x", "columns": ["no_such_column"]}, "UNKNOWN_IDENTIFIER", "no_such_column"),
        ({"query": "x", "tables": ["kb"], "columns": ["note"]}, "UNKNOWN_IDENTIFIER", "note"),
        ({"query": '"unclosed', "searchMode": "boolean"}, "INVALID_QUERY", "unbalanced quote"),
        ({"query": "(a OR b", "searchMode": "boolean"}, "INVALID_QUERY", "unbalanced parenthesis"),
        ({"query": "AND", "searchMode": "boolean"}, "INVALID_QUERY", "AND needs a term"),
        ({"query": "   "}, "VALIDATION_ERROR", "query"),
        ({"query": "x", "searchMode": "fuzzy"}, "VALIDATION_ERROR", "searchMode"),
        ({"query": "x", "limit": 0}, "VALIDATION_ERROR", "limit"),
        ({"query": "x", "limit": 101}, "VALIDATION_ERROR", "limit"),
        ({"query": "x", "offset": 950, "limit": 100}, "VALIDATION_ERROR", "offset"),
        ({"query": "x", "databases": ["1 OR 1=1"]}, "VALIDATION_ERROR", "databases"),
        ({"query": "x" * 501}, "VALIDATION_ERROR", "query"),
    ],
)
def test_bad_requests_are_400(searcher, body, code, needle):
    r, data = search(searcher, **body)
    assert r.status_code == 400, data
    assert data["error"]["code"] == code
    assert needle in str(data["error"])


def test_unknown_table_error_lists_what_exists(searcher):
    _, data = search(searcher, query="x", tables=["nope"])
    available = data["error"]["details"][0]["available"]
    assert set(available["altus4_test_target_a"]) >= {"kb", "plain", "products", "articles"}


def test_like_fallback_only_when_named(searcher):
    _, unnamed = search(searcher, query="quarterly gunicorn report", databases=[searcher.dbs["a"]])
    assert "plain" not in {r["table"] for r in unnamed["data"]["results"]}
    _, named = search(searcher, query="gunicorn", tables=["plain"], databases=[searcher.dbs["a"]])
    assert sorted(r["data"]["id"] for r in named["data"]["results"]) == [1, 3]
    assert {r["matchStrategy"] for r in named["data"]["results"]} == {"like"}
    assert named["data"]["queryOptimization"][0]["sqlSuggestion"].startswith("ALTER TABLE `plain` ADD FULLTEXT")
    assert any("LIKE" in w for w in named["data"]["warnings"])


def test_names_are_matched_case_insensitively(searcher):
    r, data = search(searcher, query="gevent", tables=["KB"], columns=["TITLE"], databases=[searcher.dbs["a"]])
    assert r.status_code == 200 and kb_ids(searcher, data, "a") == [3]


@pytest.mark.parametrize(
    "body",
    [
        {"query": "' OR 1=1 -- "},
        {"query": "x') OR 1=1 -- ", "searchMode": "boolean"},
        {"query": "mysql", "tables": ["kb`; DROP TABLE kb; --"]},
        {"query": "mysql", "tables": ["kb"], "columns": ["title`) AGAINST ('x') OR 1=1 -- "]},
        {"query": "\\'; DROP TABLE kb; --", "searchMode": "boolean"},
    ],
)
def test_sql_injection_changes_nothing_and_leaks_nothing(searcher, body, db, targets):
    r, data = search(searcher, **body)
    assert r.status_code in (200, 400)
    if r.status_code == 200:
        assert len(data["data"]["results"]) < 5  # not "every row"
    with db.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) AS n FROM `{targets['a']}`.kb")
        assert cur.fetchone()["n"] == 45
    assert "Traceback" not in r.get_data(as_text=True)


def test_semantic_mode_says_what_ran(searcher):
    _, data = search(searcher, query="gevent workers", searchMode="semantic", tables=["kb"])
    assert data["data"]["searchMode"] == "semantic" and data["data"]["modeUsed"] == "natural"
    assert data["data"]["aiUsed"] is False and data["data"]["aiReason"]
    assert kb_ids(searcher, data, "a") == [3]


def test_search_is_recorded_in_history(searcher):
    search(searcher, query="redis sentinel")
    history = searcher.client.get("/api/v1/search/history", headers=searcher.key_headers).get_json()
    assert history["data"][0]["query"] == "redis sentinel"
    assert history["data"][0]["resultCount"] >= 1
    assert set(history["data"][0]["databases"]) == set(searcher.dbs.values())


def test_user_b_cannot_search_user_a_databases(searcher, make_user):
    bob = make_user()
    secret, _ = bob.create_key()
    r = bob.client.post(
        "/api/v1/search",
        json={"query": "mysql", "databases": [searcher.dbs["a"]]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 404
    assert "mysql" not in str(r.get_json().get("data"))


def test_key_without_search_permission_is_403(searcher):
    secret, _ = searcher.create_key(permissions=["analytics"])
    r = searcher.client.post("/api/v1/search", json={"query": "x"}, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"


def test_include_analytics_adds_trends(searcher):
    search(searcher, query="gevent workers", tables=["kb"])
    _, data = search(searcher, query="gevent workers", tables=["kb"], includeAnalytics=True)
    trends = {t["period"]: t for t in data["data"]["trends"]}
    assert trends["day"]["queryVolume"] >= 1 and "gevent workers" in trends["day"]["topQueries"]
    _, plain = search(searcher, query="gevent workers", tables=["kb"])
    assert "trends" not in plain["data"]


@pytest.fixture
def black_hole():
    """A TCP server that accepts connections and never answers: a database that hangs."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_hanging_database_is_cut_off_by_the_time_budget(migrated, targets, black_hole):
    import time

    app = create_app(make_settings(SEARCH_TIMEOUT_MS="1500", CONNECTION_TIMEOUT="5"))
    client = app.test_client()
    user = register(client)
    good = user.connect_database(migrated, targets["a"])
    hung = user.call(
        "POST",
        "/api/v1/databases",
        json={"name": "Hung", "host": "127.0.0.1", "port": black_hole, "database": "x", "username": "u"},
    ).get_json()["data"]
    secret, _ = user.create_key()
    started = time.monotonic()
    r = client.post(
        "/api/v1/search",
        json={"query": "gevent workers", "tables": ["kb"]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    statuses = {d["id"]: d["status"] for d in r.get_json()["data"]["databases"]}
    assert statuses == {good["id"]: "ok", hung["id"]: "timeout"}
    assert elapsed < 4  # the 5 s connect timeout did not hold the request: the 1.5 s budget did
    app.extensions["altus4"].close()


def test_pooled_connections_carry_a_server_side_time_limit(app, user, settings, targets):
    svc = app.extensions["altus4"]
    conn = user.connect_database(settings, targets["a"])
    row = svc.connections.get(user.id, conn["id"])
    with svc.pools.connection(svc.connections.spec(row), row["schema_version"]) as c, c.cursor() as cur:
        cur.execute("SELECT @@version AS v, @@max_statement_time AS limit_s")
        found = cur.fetchone()
    assert "MariaDB" in found["v"]
    assert float(found["limit_s"]) == settings.search_timeout_ms / 1000


def test_run_parallel_keeps_order_reports_errors_and_times_out_without_starting_late_tasks():
    import threading
    import time

    from altus4.search import service

    running, most, lock, started = [0], [0], threading.Lock(), []

    def task(i, seconds=0.05):
        def run():
            with lock:
                started.append(i)
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(seconds)
            with lock:
                running[0] -= 1
            if i == 3:
                raise ValueError("three")
            return i

        return run

    outcomes = service.run_parallel([task(i) for i in range(service.MAX_PARALLEL + 4)], 5.0)
    assert [o[0] for o in outcomes] == ["ok"] * 3 + ["error"] + ["ok"] * (service.MAX_PARALLEL)
    assert [o[1] for i, o in enumerate(outcomes) if i != 3] == [i for i in range(service.MAX_PARALLEL + 4) if i != 3]
    assert isinstance(outcomes[3][1], ValueError)
    assert most[0] == service.MAX_PARALLEL  # never more at once

    started.clear()
    slow = [task(i, 0.6) for i in range(service.MAX_PARALLEL + 1)]  # one waits for a turn
    t0 = time.monotonic()
    outcomes = service.run_parallel(slow, 0.2)
    assert time.monotonic() - t0 < 0.5
    assert outcomes == [("timeout", None)] * len(slow)
    time.sleep(0.7)  # the running ones finish: the one that waited for a turn past the timeout never started
    assert len(started) == service.MAX_PARALLEL
    assert outcomes == [("timeout", None)] * len(slow)  # what the caller holds did not change


def test_highlighting_ignores_case_and_keeps_the_text_as_written():
    """Matches are found in lower-cased text (`results.Terms`) and marked in the original; a text whose lower
    case is longer ('İ' becomes two characters) is matched as written, so the marks stay in place."""
    terms = term_pattern(("Wireless", "head*", "blue light"))
    text = "WIRELESS Headphones & Blue  Light"
    marked = "<mark>WIRELESS</mark> <mark>Headphones</mark> &amp; <mark>Blue  Light</mark>"
    assert snippet(text, terms) == marked
    assert snippet("İİ " + text, terms) == "İİ " + marked
    assert (
        snippet("no match here", terms) == "no match here"
        and snippet(text, None) == "WIRELESS Headphones &amp; Blue  Light"
    )
