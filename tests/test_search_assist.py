"""Suggestions, query analysis and search trends."""

import pytest


@pytest.fixture
def searcher(user, settings, targets):
    a = user.connect_database(settings, targets["a"], name="A")
    secret, _ = user.create_key()
    user.db_a = a["id"]
    user.key_headers = {"Authorization": f"Bearer {secret}"}
    return user


def _search(user, query, **extra):
    r = user.client.post("/api/v1/search", json={"query": query, **extra}, headers=user.key_headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["data"]


def test_suggestions_from_popular_queries_and_indexed_words(searcher):
    for _ in range(2):
        _search(searcher, "gevent workers")
    _search(searcher, "gevent pools")
    r = searcher.client.get("/api/v1/search/suggestions?query=gev", headers=searcher.key_headers)
    suggestions = r.get_json()["data"]["suggestions"]
    popular = [s for s in suggestions if s["type"] == "popular"]
    assert [s["text"] for s in popular] == ["gevent workers", "gevent pools"]
    assert popular[0]["score"] == 1.0 and popular[1]["score"] == 0.5
    completions = [s["text"] for s in suggestions if s.get("source") == "completion"]
    assert "gevent" in completions


def test_suggestions_complete_the_last_word(searcher):
    r = searcher.client.get(
        "/api/v1/search/suggestions",
        query_string={"query": "scaling gunic", "tables": "kb"},
        headers=searcher.key_headers,
    )
    texts = [s["text"] for s in r.get_json()["data"]["suggestions"]]
    assert "scaling gunicorn" in texts


@pytest.mark.parametrize("qs", ["", "query=", "query=" + "x" * 101, "query=ab&databases=not-a-uuid"])
def test_suggestions_validation(searcher, qs):
    r = searcher.client.get(f"/api/v1/search/suggestions?{qs}", headers=searcher.key_headers)
    assert r.status_code == 400


def test_suggestions_never_show_other_users_queries(searcher, make_user, settings, targets):
    _search(searcher, "gevent secret plans")
    other = make_user()
    other.connect_database(settings, targets["a"])
    secret, _ = other.create_key()
    r = other.client.get("/api/v1/search/suggestions?query=gevent", headers={"Authorization": f"Bearer {secret}"})
    assert "gevent secret plans" not in [s["text"] for s in r.get_json()["data"]["suggestions"]]


def test_analyze_explains_our_own_sql_with_recommendations(searcher):
    r = searcher.client.post(
        "/api/v1/search/analyze",
        headers=searcher.key_headers,
        json={"query": "the gunicorn of x", "databases": [searcher.db_a]},
    )
    assert r.status_code == 200
    data = r.get_json()["data"]
    (db,) = data["performance"]["databases"]
    tables = {t["table"]: t for t in db["tables"]}
    assert tables["kb"]["usesFulltextIndex"] is True
    assert "ft_kb" in [step["key"] for step in tables["kb"]["explain"]]
    # kb has a primary key: ranked on (id, score) in a derived table, rows joined back by id
    assert tables["kb"]["sql"].startswith("SELECT t.`id`, t.`title`, t.`body`")
    assert "JOIN `kb` AS t ON t.`id` = s.`id`" in tables["kb"]["sql"]
    recs = " ".join(data["recommendations"])
    assert "'x' is shorter than innodb_ft_min_token_size" in recs
    assert "'the' is an InnoDB stopword" in recs
    assert "'plain' has text columns but no FULLTEXT index" in recs
    index_hint = next(o for o in data["optimization"] if o["type"] == "index")
    assert index_hint["sqlSuggestion"] == "ALTER TABLE `plain` ADD FULLTEXT INDEX `ft_plain_note` (`note`)"


def test_analyze_never_runs_user_sql(searcher, db, targets):
    payload = {"query": "x'; DROP TABLE kb; --", "databases": [searcher.db_a], "searchMode": "natural"}
    r = searcher.client.post("/api/v1/search/analyze", json=payload, headers=searcher.key_headers)
    assert r.status_code == 200
    for table in r.get_json()["data"]["performance"]["databases"][0]["tables"]:
        assert "DROP" not in table["sql"]
    with db.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) AS n FROM `{targets['a']}`.kb")
        assert cur.fetchone()["n"] == 45


def test_analyze_suggests_boolean_mode_for_operators(searcher):
    r = searcher.client.post(
        "/api/v1/search/analyze",
        json={"query": "+mysql -redis", "databases": [searcher.db_a]},
        headers=searcher.key_headers,
    )
    assert any("searchMode 'boolean'" in rec for rec in r.get_json()["data"]["recommendations"])


def test_analyze_requires_databases(searcher):
    r = searcher.client.post("/api/v1/search/analyze", json={"query": "mysql"}, headers=searcher.key_headers)
    assert r.status_code == 400


def test_search_trends_for_the_key_owner(searcher):
    _search(searcher, "gevent workers", tables=["kb"])
    _search(searcher, "gevent workers", tables=["kb"])
    _search(searcher, "redis caching", tables=["kb"])
    r = searcher.client.get("/api/v1/search/trends", headers=searcher.key_headers)
    periods = {p["period"]: p for p in r.get_json()["data"]}
    assert set(periods) == {"day", "week", "month"}
    assert periods["day"]["queryVolume"] == 3
    assert periods["day"]["topQueries"][0] == "gevent workers"
    assert periods["day"]["popularCategories"] == ["kb"]
