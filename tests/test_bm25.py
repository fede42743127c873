"""BM25 ranking on MySQL FULLTEXT: scores as computed by hand, a tokenizer that agrees with what MySQL matches,
exact paging across the re-scoring window, MySQL's order on request and where BM25 cannot be mirrored."""

from __future__ import annotations

import math
import time

import pytest
import redis
from conftest import TEST_REDIS_DB, connect_admin, fresh_fulltext_table, make_settings, register

from altus4 import create_app
from altus4.search import plan as planner
from altus4.search.bm25 import Tokenizer

DB = "altus4_test_bm25"
DOCS = [
    (1, "apple banana apple"),
    (2, "apple cherry"),
    (3, "banana banana banana cherry dates"),
    (4, "grape melon"),
]


def user_settings():
    return make_settings()


def _table(settings, table: str, rows: list, engine: str = "InnoDB") -> None:
    fresh_fulltext_table(
        settings,
        DB,
        table,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, body TEXT, FULLTEXT KEY ft_body (body))"
        f" ENGINE={engine} DEFAULT CHARSET=utf8mb4",
        f"INSERT INTO {table} VALUES (%s, %s)",
        rows,
    )


@pytest.fixture
def searcher(migrated, targets):
    """A user with the BM25 test database connected and a key, on an app with a 3-row re-scoring window."""
    _table(migrated, "docs", DOCS)
    fresh_fulltext_table(  # a column outside the FULLTEXT index too: deep pages read it only for their own rows
        migrated,
        DB,
        "many",
        "CREATE TABLE many (id INT PRIMARY KEY, body TEXT, tag VARCHAR(8), FULLTEXT KEY ft_body (body))"
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "INSERT INTO many VALUES (%s, %s, %s)",
        [(i, f"zeta {'omega ' * (i % 4)}filler{i}", f"t{i}") for i in range(1, 13)],
    )
    app = create_app(make_settings(BM25_WINDOW="3"))
    user = register(app.test_client())
    user.connect_database(migrated, DB)
    yield user, user.key_headers()
    app.extensions["altus4"].close()


def _search(user, headers, **body):
    r = user.client.post("/api/v1/search", json={"limit": 20, **body}, headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["data"]


def _bm25(doc: str, query: list[str], docs: list[str], k1: float = 0.9, b: float = 0.4) -> float:
    """Okapi BM25 with Lucene's idf, written out independently of the service's code."""
    lengths = [len(d.split()) for d in docs]
    avgdl = sum(lengths) / len(lengths)
    words = doc.split()
    total = 0.0
    for term in query:
        df = sum(term in d.split() for d in docs)
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        tf = words.count(term)
        total += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(words) / avgdl))
    return total


def test_scores_are_bm25_as_computed_by_hand(searcher):
    user, headers = searcher
    data = _search(user, headers, query="apple banana", tables=["docs"])
    assert data["rankingUsed"] == "bm25"
    texts = [d for _, d in DOCS]
    expected = {i: _bm25(d, ["apple", "banana"], texts) for i, d in DOCS}
    found = [(r["data"]["id"], r["relevanceScore"]) for r in data["results"]]
    assert [i for i, _ in found] == sorted((i for i in expected if expected[i]), key=lambda i: -expected[i])
    best = max(expected.values())
    for i, score in found:
        assert score == pytest.approx(expected[i] / best, abs=1e-5)
    # MySQL's own order on request: the statement's order, run directly
    mysql = _search(user, headers, query="apple banana", tables=["docs"], ranking="mysql")
    conn = connect_admin(user_settings(), DB)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM docs WHERE MATCH (body) AGAINST (%s) ORDER BY MATCH (body) AGAINST (%s) DESC, id",
            ("apple banana", "apple banana"),
        )
        direct = [r[0] for r in cur.fetchall()]
    conn.close()
    assert mysql["rankingUsed"] == "mysql" and [r["data"]["id"] for r in mysql["results"]] == direct


def test_statistics_are_shared_in_redis(searcher, migrated):
    user, headers = searcher
    _search(user, headers, query="cherry", tables=["docs"])
    connection = user.call("GET", "/api/v1/databases").get_json()["data"][0]["id"]
    r = redis.Redis(host=migrated.redis_host, port=migrated.redis_port, db=TEST_REDIS_DB)
    key = f"bm25:{connection}:1:docs:body"
    deadline = time.monotonic() + 10  # the count runs in the background: this search worked it out meanwhile
    while r.hget(key, "t:cherry") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.hget(key, "t:cherry") == b"2" and r.hget(key, "rows") == b"4" and r.hget(key, "t:apple") is None
    assert 0 < r.ttl(key) <= migrated.bm25_stats_ttl


@pytest.mark.parametrize("ranking", ["bm25", "mysql"])
def test_paging_is_exact_across_the_window(searcher, ranking):
    """Pages concatenate to the whole list, row data and scores included: a page past the window leaves out
    the rows between the window and itself (`plan.build_select`'s `skip`), and must start in the right place
    with its own rows whole, scaled as on the first page."""
    user, headers = searcher

    def seen(results: list) -> list:
        return [(r["id"], r["data"], r["snippet"], r["matchedColumns"], r["relevanceScore"]) for r in results]

    whole = _search(user, headers, query="zeta omega", tables=["many"], limit=12, ranking=ranking)
    assert whole["totalCount"] == 12 and whole["rankingUsed"] == ranking
    shown = seen(whole["results"])
    pages = []
    for offset in range(0, 14, 2):  # the last page is past the end
        page = _search(user, headers, query="zeta omega", tables=["many"], limit=2, offset=offset, ranking=ranking)
        assert page["totalCount"] == 12
        pages += seen(page["results"])
    assert pages == shown and len({row[0] for row in shown}) == 12
    assert all(r["data"]["body"] and r["data"]["tag"] for r in whole["results"])
    if ranking == "mysql":
        return
    scores = [r["relevanceScore"] for r in whole["results"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
    # the window (3 rows) is BM25's order: rows with more "omega" in short documents first
    omegas = [r["data"]["body"].count("omega") for r in whole["results"][:3]]
    assert omegas == [3, 3, 3]


def test_a_deep_page_statement_sends_only_the_window_and_the_page(searcher, migrated):
    """`skip` (3, 8) leaves ranks 4-8 out of a 10-row statement and reads ranks 1-3 for their scores only
    (key and searched text): ranks 1-3 and 9-10 come back in the same order with the same total, whole from
    rank 9 on."""
    q = planner.TableQuery("many", ("id", "body", "tag"), ("id",), key_is_unique=True, match_groups=(("body",),))
    conn = connect_admin(migrated, DB, dict_rows=True)
    try:
        with conn.cursor() as cur:
            whole, skipping = (planner.build_select(q, "natural", "zeta omega", (), (), 10, s) for s in (None, (3, 8)))
            cur.execute(whole.sql, whole.params)
            every = list(cur.fetchall())
            cur.execute(skipping.sql, skipping.params)
            kept = list(cur.fetchall())
    finally:
        conn.close()
    assert len(every) == 10 and all(r["tag"] for r in every)
    assert kept == [{**r, "tag": None} for r in every[:3]] + every[8:]


def test_a_table_bm25_cannot_mirror_keeps_mysql_order(searcher, migrated):
    user, headers = searcher
    _table(migrated, "myisam_docs", DOCS, engine="MyISAM")
    # MyISAM has its own tokenizer and stopwords: MySQL's order is kept, and the response says why
    data = _search(user, headers, query="cherry dates", tables=["myisam_docs", "docs"])
    assert data["rankingUsed"] == "mysql"
    assert any("not an InnoDB table" in w for w in data["warnings"])


def test_the_tokenizer_agrees_with_what_mysql_matches(migrated, targets):
    text = "The quick_brown fox ab jumps over 42 lazy dogs: e-mail x9y, naïve OVER-engineering is it"
    _table(migrated, "tokens", [(1, text)])
    conn = connect_admin(migrated, DB)
    with conn.cursor() as cur:
        cur.execute("SELECT @@innodb_ft_min_token_size, @@innodb_ft_max_token_size, @@innodb_ft_enable_stopword")
        low, high, stop = cur.fetchone()
        tokenizer = Tokenizer(int(low), int(high)) if int(stop) else Tokenizer(int(low), int(high), frozenset())
        kept = set(tokenizer.tokens(text))
        assert {"quick_brown", "fox", "jumps", "over", "lazy", "dogs", "mail", "x9y", "naïve", "engineering"} <= kept
        words = {w.lower() for w in __import__("re").findall(r"\w+", text)}
        for word in words:
            cur.execute("SELECT COUNT(*) FROM tokens WHERE MATCH (body) AGAINST (%s IN BOOLEAN MODE)", (f'+"{word}"',))
            matched = cur.fetchone()[0] == 1
            assert matched == (word in kept), word
    conn.close()


def test_profile_counts_what_the_token_list_counts():
    """`Tokenizer.profile` (a remembered length and one regex for the terms) agrees with counting the tokens."""
    texts = [
        "The quick_brown fox ab jumps over 42 lazy dogs: e-mail x9y, naïve OVER-engineering is it",
        "Theory of the theatre: them, THEM and thematic themes; the end",
        "Finance financial FINANCE-finances, fin fine " + "x" * 90 + " finance",
        "",
    ]
    for tokenizer in (Tokenizer(), Tokenizer(4, 20, frozenset()), Tokenizer(3, 84)):
        for terms in (["finance", "over"], ["the*", "them"], ["fin*", "x9y", "naïve"], []):
            for text in texts:
                tokens = tokenizer.tokens(text)
                expected = [
                    sum(1 for t in tokens if t.startswith(term[:-1])) if term.endswith("*") else tokens.count(term)
                    for term in terms
                ]
                assert tokenizer.profile(text, terms) == (len(tokens), expected), (tokenizer, terms, text)


def test_a_first_search_does_not_wait_for_a_slow_count(migrated, targets, monkeypatch):
    """A new term's document frequency is counted in the background; the search does not wait for it but works
    it out from MySQL's scores, and the count, once back, serves the next searches. Before, the search waited
    for the count (seconds on a million rows)."""
    import threading

    from altus4.search import bm25 as bm25_module

    _table(migrated, "slow", [(i, f"kiwi {'lime ' * (i % 3)}row{i}") for i in range(1, 21)])
    counted = threading.Event()
    real = bm25_module.StatsStore.count

    def slow_count(self, cur, table, columns, terms):
        time.sleep(1.0)  # a million rows' worth of COUNT
        found = real(self, cur, table, columns, terms)
        counted.set()
        return found

    monkeypatch.setattr(bm25_module.StatsStore, "count", slow_count)
    app = create_app(make_settings(BM25_DF_WAIT_MS="50", SEARCH_CACHE_TTL="0"))
    try:
        user = register(app.test_client())
        user.connect_database(migrated, DB)
        headers = user.key_headers()
        started = time.perf_counter()
        first = _search(user, headers, query="kiwi", tables=["slow"])
        waited = time.perf_counter() - started
        assert waited < 0.8 and first["rankingUsed"] == "bm25", waited  # the count takes 1 s: not waited for
        assert counted.wait(5)
        time.sleep(0.1)
        again = _search(user, headers, query="kiwi", tables=["slow"])
        # the frequency worked out was the count itself: the order is the same
        assert [r["id"] for r in first["results"]] == [r["id"] for r in again["results"]]
        cache = redis.Redis(host=migrated.redis_host, port=migrated.redis_port, db=TEST_REDIS_DB, decode_responses=True)
        stored = [v for key in cache.scan_iter("bm25:*:slow:*") for v in [cache.hget(key, "t:kiwi")] if v]
        assert stored == ["20"]
    finally:
        app.extensions["altus4"].close()


FRUIT = [
    (i, " ".join(["kiwi"] + ["lime"] * (i % 3 == 0) * (1 + i % 2) + ["plum"] * (i % 5 == 0) + ["fig"] * (i % 7 == 0)))
    for i in range(1, 61)
]
TRUTH = {t: sum(t in body.split() for _, body in FRUIT) for t in ("kiwi", "lime", "plum", "fig")}


@pytest.fixture
def slow_counts(migrated, targets, monkeypatch):
    """The fruit table, counts that take a second (a million rows' worth), and a search that waits for none."""
    from altus4.search import bm25 as bm25_module

    _table(migrated, "fruit", FRUIT)
    real = bm25_module.StatsStore.count

    def slow_count(self, cur, table, columns, terms):
        time.sleep(1.0)
        return real(self, cur, table, columns, terms)

    monkeypatch.setattr(bm25_module.StatsStore, "count", slow_count)
    app = create_app(make_settings(BM25_DF_WAIT_MS="0", SEARCH_CACHE_TTL="0"))
    user = register(app.test_client())
    user.connect_database(migrated, DB)
    cache = redis.Redis(host=migrated.redis_host, port=migrated.redis_port, db=TEST_REDIS_DB, decode_responses=True)

    def entry() -> tuple[str, dict]:
        connection = user.call("GET", "/api/v1/databases").get_json()["data"][0]["id"]
        key = f"bm25:{connection}:1:fruit:body"
        return key, cache.hgetall(key)

    def frequencies(terms: tuple[str, ...]) -> dict[str, int]:
        """What a search in a new process would use now (a fresh store: nothing cached in this one)."""
        from altus4.search.bm25 import StatsStore

        store = StatsStore(app.extensions["altus4"].search.bm25.store, 3600, 50_000)
        return store.lookup(None, entry()[0], "fruit", ("body",), terms)[1].df

    yield user, entry, frequencies, cache
    app.extensions["altus4"].close()


def _until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_a_first_search_works_out_frequencies_exactly_from_mysqls_scores(slow_counts):
    """InnoDB scores a match as the sum of tf x idf^2 over the query's words: the first search does not wait
    for the counts, it works each term's frequency out of the scores MySQL returned, and they are the counts."""
    user, entry, frequencies, _ = slow_counts
    started = time.perf_counter()
    first = _search(user, user.key_headers(), query="lime plum fig kiwi", tables=["fruit"])
    assert time.perf_counter() - started < 0.8  # the counts take a second each
    _, fields = entry()
    assert {f for f in fields if f.startswith("p:")} == {"p:lime", "p:plum", "p:fig", "p:kiwi"}
    assert frequencies(("lime", "plum", "fig", "kiwi")) == TRUTH  # kiwi is in every row: InnoDB's idf ~0
    # one term (the rarest, the cheapest) is counted too, to pin the row count InnoDB divides by
    assert _until(lambda: "t:fig" in entry()[1]) and entry()[1]["t:fig"] == str(TRUTH["fig"])
    again = _search(user, user.key_headers(), query="lime plum fig kiwi", tables=["fruit"])
    assert [r["id"] for r in first["results"]] == [r["id"] for r in again["results"]]


def test_a_stale_table_statistic_is_corrected_by_one_count(slow_counts):
    """MySQL 8 may serve a table's row statistic from a cache up to a day old; InnoDB's idf uses the live one.
    Once one term is both worked out and counted, their ratio is the row count every share is scaled by."""
    user, entry, frequencies, cache = slow_counts
    _search(user, user.key_headers(), query="fig", tables=["fruit"])
    assert _until(lambda: "t:fig" in entry()[1])
    key, _ = entry()
    cache.hset(key, "innodb", "600")  # the statistic, ten times off
    _search(user, user.key_headers(), query="lime plum", tables=["fruit"])
    assert frequencies(("lime", "plum")) == {"lime": TRUTH["lime"], "plum": TRUTH["plum"]}
    cache.hdel(key, "t:fig")  # without the count, the stale statistic would scale them
    assert frequencies(("lime", "plum")) == {"lime": 60, "plum": 60}  # ten times off, capped at the rows


def test_weighted_boolean_queries_are_counted_not_worked_out(slow_counts):
    """A boolean query whose operators weigh terms (`>lime`) scores otherwise: its scores are not trusted, the
    search estimates meanwhile, and the terms' counts serve the next searches."""
    user, entry, frequencies, _ = slow_counts
    body = _search(user, user.key_headers(), query="kiwi >lime", searchMode="boolean", tables=["fruit"])
    assert body["rankingUsed"] == "bm25" and body["totalCount"] == 60
    assert not [f for f in entry()[1] if f.startswith("p:")]
    assert _until(lambda: "t:lime" in entry()[1])
    assert frequencies(("kiwi", "lime")) == {"kiwi": 60, "lime": TRUTH["lime"]}
