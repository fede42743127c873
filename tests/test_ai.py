"""The AI layer through the real `openai` client against a local OpenAI-compatible server: semantic
re-ranking when it works, a natural-language answer within budget whenever it does not."""

import json
import subprocess
import sys
import time

import pytest
import redis
from conftest import (
    ROOT_DIR,
    TEST_REDIS_DB,
    connect_admin,
    env_for_tests,
    fresh_fulltext_table,
    make_settings,
    register,
)
from fake_openai import FakeOpenAI

from altus4 import create_app

AI_DB = "altus4_test_ai"
LONG_NOISY = (
    "redis " * 6 + "cluster sentinel replication failover persistence snapshot memory eviction "
    "latency throughput benchmark keyspace pipeline transactions scripting modules"
).strip()
FOCUSED = "redis cache"


@pytest.fixture(scope="module")
def ai_database(settings):
    """Two rows that FULLTEXT and embeddings rank differently, among fillers that give IDF weight."""
    fillers = [(10 + i, f"unrelated filler text number {i} about gardening") for i in range(30)]
    fresh_fulltext_table(
        settings,
        AI_DB,
        "notes",
        "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT NOT NULL, FULLTEXT (body)) ENGINE=InnoDB",
        "INSERT INTO notes VALUES (%s, %s)",
        [(1, LONG_NOISY), (2, FOCUSED), (3, "car repair shop"), *fillers],
    )
    return AI_DB


@pytest.fixture
def fake():
    server = FakeOpenAI().start()
    yield server
    server.stop()


def _app(fake, **extra):
    settings = make_settings()
    cache = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=TEST_REDIS_DB)
    for key in cache.scan_iter("emb:fake-embed:*"):  # each test starts with no embedding cached or stored
        cache.delete(key)
    conn = connect_admin(settings, settings.db_database)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM embeddings WHERE model = 'fake-embed'")
    conn.close()
    env = dict(
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=fake.base_url,
        OPENAI_EMBEDDING_MODEL="fake-embed",
        AI_TIMEOUT_MS="800",
        SEARCH_TIMEOUT_MS="3000",
        SEMANTIC_FUSION="rrf",
        SEMANTIC_LEXICAL_WEIGHT="1",  # the vectors lead here, so that their order shows in two-row results
        SEMANTIC_VECTOR_WEIGHT="2",
        SEARCH_CACHE_TTL="0",
    )
    env.update(extra)
    return create_app(make_settings(**env))


def _cli_environment(monkeypatch, fake) -> None:
    """What `altus4 index` reads: the test databases and the fake provider."""
    for name, value in {
        **env_for_tests(),
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_EMBEDDING_MODEL": "fake-embed",
    }.items():
        monkeypatch.setenv(name, value)


def _searcher(app, settings, database):
    user = register(app.test_client())
    user.connect_database(settings, database)
    secret, _ = user.create_key()
    user.key_headers = {"Authorization": f"Bearer {secret}"}
    return user


def _search(user, **body):
    """The AI layer over MySQL's own order, where the long row that repeats a word ranks first; BM25 (the default
    ranking, tests/test_bm25.py) already prefers the focused row, which would hide what the AI changes."""
    body = {"tables": ["notes"], "ranking": "mysql", **body}
    r = user.client.post("/api/v1/search", json=body, headers=user.key_headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["data"]


def _ids(data):
    return [r["data"]["id"] for r in data["results"]]


def test_semantic_mode_reranks_lexical_candidates(migrated, ai_database, fake):
    app = _app(fake)
    user = _searcher(app, migrated, ai_database)
    natural = _search(user, query="redis cache", searchMode="natural")
    assert _ids(natural) == [1, 2]  # InnoDB favours the long text that repeats "redis"
    semantic = _search(user, query="redis cache", searchMode="semantic")
    assert semantic["modeUsed"] == "semantic" and semantic["aiUsed"] is True and "aiReason" not in semantic
    assert _ids(semantic) == [2, 1]  # the focused row is closer in embedding space
    assert fake.calls == ["embeddings"] and fake.inputs[0][0] == "redis cache" and len(fake.inputs[0]) == 3
    assert 0 < semantic["results"][-1]["relevanceScore"] < semantic["results"][0]["relevanceScore"] <= 1
    again = _search(user, query="redis cache", searchMode="semantic")  # embeddings cached: no model call
    assert _ids(again) == [2, 1] and fake.calls == ["embeddings"]
    app.extensions["altus4"].close()


@pytest.mark.parametrize(
    "mode,reason",
    [
        ("slow", "timeout"),
        ("429", "rate_limited"),
        ("500", "upstream_error"),
        ("malformed", "invalid_response"),
        ("bad_shape", "invalid_response"),
    ],
)
def test_every_provider_failure_falls_back_within_budget(migrated, ai_database, fake, mode, reason):
    fake.mode, fake.delay = mode, 3.0
    app = _app(fake)
    user = _searcher(app, migrated, ai_database)
    started = time.monotonic()
    data = _search(user, query="redis cache", searchMode="semantic")
    elapsed = time.monotonic() - started
    assert data["aiUsed"] is False and data["modeUsed"] == "natural" and data["aiReasonCode"] == reason
    assert _ids(data) == [1, 2]  # the natural-language answer
    assert elapsed < 2.5  # AI_TIMEOUT_MS=800 bounded the slow provider (it would take 3 s)
    app.extensions["altus4"].close()


def test_connection_refused_falls_back(migrated, ai_database, fake):
    app = _app(fake, OPENAI_BASE_URL="http://127.0.0.1:1/v1")
    user = _searcher(app, migrated, ai_database)
    data = _search(user, query="redis cache", searchMode="semantic")
    assert data["aiReasonCode"] == "upstream_error" and _ids(data) == [1, 2]
    app.extensions["altus4"].close()


def test_breaker_opens_and_recovers(migrated, ai_database, fake):
    app = _app(fake, AI_BREAKER_FAILURES="2", AI_BREAKER_RESET_SECONDS="0.5")
    user = _searcher(app, migrated, ai_database)
    fake.mode = "500"
    reasons = [_search(user, query=f"redis cache {i}", searchMode="semantic")["aiReasonCode"] for i in range(4)]
    assert reasons == ["upstream_error", "upstream_error", "circuit_open", "circuit_open"]
    assert len(fake.calls) == 2  # an open breaker does not call the provider
    health = user.client.get("/api/v1/management/health").get_json()["data"]["checks"]["ai"]
    assert health["circuit"] == "open"
    fake.mode = "ok"
    time.sleep(0.6)
    probe = _search(user, query="redis cache", searchMode="semantic")  # half-open probe succeeds
    assert probe["aiUsed"] is True
    assert app.extensions["altus4"].ai.breaker.state == 0
    app.extensions["altus4"].close()


def test_shared_budget_turns_excess_into_fallbacks(migrated, ai_database, fake):
    app = _app(fake, AI_RATE_LIMIT_PER_MINUTE="2", AI_QUEUE_WAIT_MS="0")
    cache = redis.Redis(host=migrated.redis_host, port=migrated.redis_port, db=TEST_REDIS_DB)
    cache.delete("ai:{bucket}:global")
    user = _searcher(app, migrated, ai_database)
    used = [_search(user, query=f"redis cache {i}", searchMode="semantic")["aiUsed"] for i in range(4)]
    assert used == [True, True, False, False]
    assert len(fake.calls) == 2
    cache.delete("ai:{bucket}:global")
    app.extensions["altus4"].close()


LIMITER_PROBE = """
import json, sys
from altus4.ai.provider import AIUnavailable
from altus4.ai.resilience import SharedLimiter
from altus4.config import Settings
from altus4.redis_store import RedisStore
settings = Settings.from_env(json.loads(sys.argv[1]))
limiter = SharedLimiter(RedisStore(settings), 6, {"free": 1000}, max_wait=0)
granted = 0
for _ in range(10):
    try:
        limiter.acquire("probe-user", "free")
        granted += 1
    except AIUnavailable:
        pass
print(granted)
"""


def test_the_limiter_is_shared_by_two_worker_processes(migrated):
    cache = redis.Redis(host=migrated.redis_host, port=migrated.redis_port, db=TEST_REDIS_DB)
    cache.delete("ai:{bucket}:global", "ai:{user:probe-user}:hourly")
    env = json.dumps(env_for_tests())
    procs = [
        subprocess.Popen([sys.executable, "-c", LIMITER_PROBE, env], cwd=ROOT_DIR, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    granted = [int(p.communicate(timeout=60)[0].strip()) for p in procs]
    assert 6 <= sum(granted) <= 7, granted  # a budget of 6 per minute (+1 refilled at most) across both
    cache.delete("ai:{bucket}:global", "ai:{user:probe-user}:hourly")


def test_without_a_key_every_endpoint_says_ai_is_off(migrated, ai_database):
    app = create_app(make_settings(OPENAI_API_KEY=""))
    user = _searcher(app, migrated, ai_database)
    data = _search(user, query="redis cache", searchMode="semantic")
    assert data["aiReasonCode"] == "not_configured" and "no OPENAI_API_KEY" in data["aiReason"]
    assert user.client.get("/api/v1/management/health").get_json()["data"]["checks"]["ai"]["status"] == "disabled"
    app.extensions["altus4"].close()


def test_index_command_embeds_once_and_incrementally(migrated, ai_database, fake, monkeypatch):
    from click.testing import CliRunner

    from altus4.cli import main

    app = _app(fake)
    user = _searcher(app, migrated, ai_database)
    conn_id = user.call("GET", "/api/v1/databases").get_json()["data"][0]["id"]
    _cli_environment(monkeypatch, fake)
    runner = CliRunner()
    first = runner.invoke(main, ["index", conn_id, "notes", "--batch", "10"])
    assert first.exit_code == 0, first.output
    assert "33 rows: 33 embedded, 0 already indexed" in first.output
    second = runner.invoke(main, ["index", conn_id, "notes"])
    assert "33 rows: 0 embedded, 33 already indexed" in second.output  # resumable: nothing twice
    conn = connect_admin(migrated, ai_database)
    with conn.cursor() as cur:
        cur.execute("UPDATE notes SET body = 'redis cache tuning' WHERE id = 2")
    try:
        third = runner.invoke(main, ["index", conn_id, "notes"])
        assert "33 rows: 1 embedded, 32 already indexed" in third.output  # incremental: the changed row
        fake.calls.clear()
        semantic = _search(user, query="redis tuning", searchMode="semantic")
        assert semantic["aiUsed"] is True
        assert fake.inputs[-1] == ["redis tuning"]  # rows came from the index: only the query was embedded
    finally:
        with conn.cursor() as cur:
            cur.execute("UPDATE notes SET body = %s WHERE id = 2", (FOCUSED,))
        conn.close()
    unknown = runner.invoke(main, ["index", conn_id, "nope"])
    assert unknown.exit_code != 0 and "no table 'nope'" in unknown.output
    app.extensions["altus4"].close()


def test_ai_suggestions_and_their_fallback(migrated, ai_database, fake):
    app = _app(fake)
    user = _searcher(app, migrated, ai_database)
    _search(user, query="redis cache", searchMode="natural")
    fake.chat_reply = {
        "suggestions": [
            {"text": "redis cache", "type": "spelling"},
            {"text": "redis eviction policy", "type": "semantic"},
        ]
    }
    r = user.client.get("/api/v1/search/suggestions?query=rediss", headers=user.key_headers).get_json()["data"]
    assert r["aiUsed"] is True
    kinds = {(s["text"], s["type"]) for s in r["suggestions"]}
    assert ("redis eviction policy", "semantic") in kinds
    assert ("redis cache", "popular") not in kinds  # "rediss" is not a prefix of the popular query
    fake.chat_reply = {"suggestions": [{"text": "x" * 500, "type": "spelling"}]}  # outside the allowed shape
    bad = user.client.get("/api/v1/search/suggestions?query=redis", headers=user.key_headers).get_json()["data"]
    assert bad["aiUsed"] is False and bad["aiReason"] == "invalid_response"
    assert bad["suggestions"][0] == {"text": "redis cache", "score": 1.0, "type": "popular", "source": "history"}
    app.extensions["altus4"].close()


def test_ai_insights_join_the_rule_based_ones(migrated, ai_database, fake):
    app = _app(fake)
    user = _searcher(app, migrated, ai_database)
    _search(user, query="zzznothing", searchMode="natural")
    fake.chat_reply = {
        "insights": [
            {
                "type": "semantic_enhancement",
                "description": "Index the notes table body",
                "confidence": 0.8,
                "actionable": True,
            }
        ]
    }
    insights = user.call("GET", "/api/v1/analytics/insights").get_json()["data"]
    sources = {(i["type"], i["source"]) for i in insights}
    assert ("semantic_enhancement", "ai") in sources and ("semantic_enhancement", "rules") in sources
    fake.chat_reply = "{not json"
    fallback = user.call("GET", "/api/v1/analytics/insights").get_json()["data"]
    assert fallback and {i["source"] for i in fallback} == {"rules"}
    app.extensions["altus4"].close()


def test_ai_optimisation_advice_and_categories(migrated, ai_database, fake):
    app = _app(fake)
    user = _searcher(app, migrated, ai_database)
    db_id = user.call("GET", "/api/v1/databases").get_json()["data"][0]["id"]
    fake.chat_reply = {
        "optimization": [
            {
                "type": "index",
                "impact": "high",
                "description": "Add a FULLTEXT index",
                "sqlSuggestion": "ALTER TABLE notes ADD FULLTEXT (body)",
            }
        ]
    }
    analysis = user.client.post(
        "/api/v1/search/analyze", json={"query": "redis", "databases": [db_id]}, headers=user.key_headers
    ).get_json()["data"]
    assert analysis["aiUsed"] is True
    assert {"ai", "rules"} >= {o["source"] for o in analysis["optimization"]}
    assert any(o["source"] == "ai" and o["impact"] == "high" for o in analysis["optimization"])
    fake.chat_reply = {"categories": [{"name": "Caching", "results": [0, 1], "confidence": 0.9}]}
    found = _search(user, query="redis cache", includeAnalytics=True)
    assert found["categories"] == [{"name": "Caching", "count": 2, "confidence": 0.9, "source": "ai"}]
    fake.chat_reply = {"categories": [{"name": "Out of range", "results": [99]}]}  # invalid: falls back to tables
    fallback = _search(user, query="redis cache", includeAnalytics=True)
    assert fallback["categories"][0]["name"] == "notes"
    app.extensions["altus4"].close()


def test_query_expansion_widens_the_candidates(migrated, ai_database, fake):
    app = _app(fake, SEMANTIC_QUERY_EXPANSION="true")
    user = _searcher(app, migrated, ai_database)
    assert _ids(_search(user, query="memory", searchMode="natural")) == [1]
    fake.chat_reply = {"terms": ["cache"]}
    expanded = _search(user, query="memory", searchMode="semantic")
    assert expanded["expandedTerms"] == ["cache"] and expanded["aiUsed"] is True
    assert set(_ids(expanded)) == {1, 2}  # the row about caches was found through the expansion
    assert fake.calls[:2] == ["chat", "embeddings"]
    fake.chat_reply = {"terms": ["DROP TABLE notes; --"]}  # not a word list: ignored, search unaffected
    plain = _search(user, query="memory", searchMode="semantic")
    assert "expandedTerms" not in plain and _ids(plain) == [1]
    app.extensions["altus4"].close()


def test_indexed_tables_are_searched_by_vector_too(migrated, ai_database, fake, monkeypatch):
    """A row FULLTEXT cannot find (no shared word) comes back through its stored vector."""
    from click.testing import CliRunner

    from altus4.cli import main

    app = _app(fake)
    user = _searcher(app, migrated, ai_database)
    assert _ids(_search(user, query="automobile", searchMode="natural")) == []
    before = _search(user, query="automobile", searchMode="semantic")
    assert _ids(before) == []  # not indexed yet: re-ranking has no candidates
    conn_id = user.call("GET", "/api/v1/databases").get_json()["data"][0]["id"]
    _cli_environment(monkeypatch, fake)
    assert CliRunner().invoke(main, ["index", conn_id, "notes"]).exit_code == 0
    after = _search(user, query="automobile", searchMode="semantic", limit=3)
    assert after["aiUsed"] is True and _ids(after)[0] == 3  # "automobile" and "car" share a vector direction
    app.extensions["altus4"].close()


def test_semantic_mode_never_returns_a_row_the_filter_excludes(migrated, ai_database, fake, monkeypatch):
    """The vector candidates pass the filter too: the row only its vector finds ("automobile" → "car repair
    shop", id 3) comes back unfiltered, and not when the filter excludes it."""
    from click.testing import CliRunner

    from altus4.cli import main

    app = _app(fake)
    user = _searcher(app, migrated, ai_database)
    conn_id = user.call("GET", "/api/v1/databases").get_json()["data"][0]["id"]
    _cli_environment(monkeypatch, fake)
    assert CliRunner().invoke(main, ["index", conn_id, "notes"]).exit_code == 0
    assert 3 in _ids(_search(user, query="automobile", searchMode="semantic", limit=5))
    kept = _search(user, query="automobile", searchMode="semantic", limit=50, filter="id != 3")
    assert kept["aiUsed"] is True and 3 not in _ids(kept)
    narrowed = _search(user, query="redis automobile", searchMode="semantic", limit=50, filter="id >= 10")
    assert narrowed["aiUsed"] is True and all(i >= 10 for i in _ids(narrowed))
    app.extensions["altus4"].close()
