"""/api/v1/analytics: computed from the searches just made, scoped to the user; admin views for admins."""

from datetime import date, datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from conftest import env_for_tests

from altus4.cli import main


@pytest.fixture
def active(user, settings, targets):
    """A user who has just made five searches (two of them the same, one finding nothing)."""
    user.connect_database(settings, targets["a"])
    secret, _ = user.create_key()
    headers = {"Authorization": f"Bearer {secret}"}
    for body in (
        {"query": "gevent workers"},
        {"query": "gevent workers"},
        {"query": "redis caching"},
        {"query": "+mysql +slow", "searchMode": "boolean"},
        {"query": "zzzunmatched"},
    ):
        assert user.client.post("/api/v1/search", json=body, headers=headers).status_code == 200
    return user


def test_popular_queries(active):
    data = active.call("GET", "/api/v1/analytics/popular-queries").get_json()["data"]
    assert data[0]["query_text"] == "gevent workers" and data[0]["frequency"] == 2
    assert {q["query_text"] for q in data} == {"gevent workers", "redis caching", "+mysql +slow", "zzzunmatched"}
    assert data[0]["last_used"].endswith("Z") and data[0]["avg_results"] > 0
    limited = active.call("GET", "/api/v1/analytics/popular-queries?limit=1").get_json()["data"]
    assert len(limited) == 1


def test_search_history_with_paging(active):
    page = active.call("GET", "/api/v1/analytics/search-history?limit=2&offset=1").get_json()["data"]
    assert page["total"] == 5 and len(page["items"]) == 2
    everything = active.call("GET", "/api/v1/analytics/search-history").get_json()["data"]["items"]
    assert [i["query"] for i in everything][1:3] == [i["query"] for i in page["items"]]
    assert everything[-1]["query"] == "gevent workers"


def test_search_trends_and_performance(active):
    trends = active.call("GET", "/api/v1/analytics/search-trends?period=week").get_json()["data"]
    today = datetime.now(timezone.utc).date().isoformat()
    assert trends[-1]["date"] == today and trends[-1]["queryVolume"] == 5
    assert trends[-1]["topQueries"][0] == "gevent workers"
    perf = active.call("GET", "/api/v1/analytics/performance").get_json()["data"]
    assert perf["summary"]["totalQueries"] == 5
    modes = {m["search_mode"]: m["count"] for m in perf["searchModeDistribution"]}
    assert modes == {"natural": 4, "boolean": 1}
    assert perf["timeSeriesData"][-1]["total_queries"] == 5


def test_date_range_filters(active):
    yesterday = (date.today() - timedelta(days=3)).isoformat()
    older = (date.today() - timedelta(days=10)).isoformat()
    empty = active.call("GET", f"/api/v1/analytics/performance?startDate={older}&endDate={yesterday}").get_json()
    assert empty["data"]["summary"]["totalQueries"] == 0
    bad = active.call("GET", f"/api/v1/analytics/performance?startDate={yesterday}&endDate={older}")
    assert bad.status_code == 400
    assert active.call("GET", "/api/v1/analytics/performance?period=decade").status_code == 400
    assert active.call("GET", "/api/v1/analytics/performance?startDate=yesterday").status_code == 400


def test_insights_and_dashboard(active):
    insights = active.call("GET", "/api/v1/analytics/insights").get_json()["data"]
    kinds = {i["type"] for i in insights}
    assert "semantic_enhancement" in kinds  # the query that found nothing
    zero = next(i for i in insights if i["type"] == "semantic_enhancement")
    assert zero["data"]["queries"][0]["query"] == "zzzunmatched"
    dashboard = active.call("GET", "/api/v1/analytics/dashboard").get_json()["data"]
    assert dashboard["summary"]["totalQueries"] == 5
    assert dashboard["summary"]["connectedDatabases"] == 1 and dashboard["summary"]["activeApiKeys"] == 1
    assert dashboard["popularQueries"][0]["query_text"] == "gevent workers"


def test_analytics_are_per_user(active, make_user):
    other = make_user()
    assert other.call("GET", "/api/v1/analytics/search-history").get_json()["data"]["total"] == 0
    assert other.call("GET", "/api/v1/analytics/popular-queries").get_json()["data"] == []


def test_admin_endpoints_need_the_admin_role(active, monkeypatch):
    for path in ("system-overview", "user-activity", "performance-metrics"):
        r = active.call("GET", f"/api/v1/analytics/admin/{path}")
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"
    for name, value in env_for_tests().items():
        monkeypatch.setenv(name, value)
    assert CliRunner().invoke(main, ["user:promote", active.email]).exit_code == 0
    overview = active.call("GET", "/api/v1/analytics/admin/system-overview").get_json()["data"]
    assert overview["totalUsers"] >= 1 and overview["totalSearches"] >= 5
    activity = active.call("GET", "/api/v1/analytics/admin/user-activity").get_json()["data"]
    assert any(u["email"] == active.email and u["searchCount"] == 5 for u in activity["topUsers"])
    metrics = active.call("GET", "/api/v1/analytics/admin/performance-metrics").get_json()["data"]
    assert 0 <= metrics["database"]["connectionPoolUsage"] <= 1
    assert metrics["system"]["uptime"] > 0


def test_analytics_need_a_jwt(active):
    r = active.client.get("/api/v1/analytics/dashboard")
    assert r.status_code == 401


def test_views_narrowed_to_one_key_or_one_database(user, settings, targets):
    """Two keys and two databases: each view counts only the key's or the database's searches."""
    shop = user.connect_database(settings, targets["a"])["id"]
    other = user.connect_database(settings, targets["b"])["id"]
    first, first_key = user.create_key()
    second, second_key = user.create_key(name="second")
    searches = [
        (first, {"query": "gevent workers", "databases": [shop]}),
        (first, {"query": "gevent workers", "databases": [shop, other]}),
        (second, {"query": "redis caching", "databases": [other]}),
        (second, {"query": "zzzunmatched", "databases": [other]}),
    ]
    for secret, body in searches:
        r = user.client.post("/api/v1/search", json=body, headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200, r.get_json()

    def total(**filters) -> int:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        perf = user.call("GET", f"/api/v1/analytics/performance?{query}").get_json()["data"]
        history = user.call("GET", f"/api/v1/analytics/search-history?{query}").get_json()["data"]
        assert history["total"] == perf["summary"]["totalQueries"], (history, perf)
        return history["total"]

    assert total() == 4
    assert total(apiKeyId=first_key["id"]) == 2 and total(apiKeyId=second_key["id"]) == 2
    assert total(databaseId=shop) == 2 and total(databaseId=other) == 3
    assert total(apiKeyId=first_key["id"], databaseId=other) == 1
    popular = user.call("GET", f"/api/v1/analytics/popular-queries?apiKeyId={second_key['id']}").get_json()["data"]
    assert {q["query_text"] for q in popular} == {"redis caching", "zzzunmatched"}
    trends = user.call("GET", f"/api/v1/analytics/search-trends?databaseId={shop}").get_json()["data"]
    assert trends[-1]["queryVolume"] == 2 and trends[-1]["topQueries"] == ["gevent workers"]
    # a malformed id is a 400 naming the field; another user's key id finds nothing
    bad = user.call("GET", "/api/v1/analytics/performance?apiKeyId=1%27%20OR%201=1")
    assert bad.status_code == 400 and bad.get_json()["error"]["details"][0]["field"] == "apiKeyId"
    assert total(apiKeyId="00000000-0000-4000-8000-000000000000") == 0


def test_zero_result_queries_and_daily_percentiles(active):
    zero = active.call("GET", "/api/v1/analytics/zero-result-queries?period=month").get_json()["data"]
    assert [(q["query_text"], q["frequency"], q["avg_results"]) for q in zero] == [("zzzunmatched", 1, 0.0)]
    history = active.call("GET", "/api/v1/analytics/search-history").get_json()["data"]["items"]
    times = sorted(i["executionTime"] for i in history)  # five searches: nearest rank p50 = 3rd, p95 = 5th
    day = active.call("GET", "/api/v1/analytics/performance").get_json()["data"]["timeSeriesData"][-1]
    assert day["p50_response_time"] == pytest.approx(times[2], abs=0.01)
    assert day["p95_response_time"] == pytest.approx(times[4], abs=0.01) == day["max_response_time"]


def test_later_pages_and_previews_are_not_recorded(user, settings, targets):
    """Page 2 of a search is the same search; a preview while typing (`analytics: false`) is not one yet. Both
    still count as requests of the key."""
    user.connect_database(settings, targets["a"])
    secret, key = user.create_key()
    headers = {"Authorization": f"Bearer {secret}"}
    for body in (
        {"query": "gevent workers", "limit": 2},
        {"query": "gevent workers", "limit": 2, "offset": 2},
        {"query": "gevent workers", "limit": 2, "offset": 4},
        {"query": "gev", "analytics": False},
        {"query": "gevent", "analytics": False},
    ):
        assert user.client.post("/api/v1/search", json=body, headers=headers).status_code == 200
    history = user.call("GET", "/api/v1/analytics/search-history").get_json()["data"]
    assert [i["query"] for i in history["items"]] == ["gevent workers"]
    popular = user.call("GET", "/api/v1/analytics/popular-queries").get_json()["data"]
    assert [(q["query_text"], q["frequency"]) for q in popular] == [("gevent workers", 1)]
    keys = user.call("GET", "/api/v1/keys").get_json()["data"]["apiKeys"]
    assert next(k for k in keys if k["id"] == key["id"])["usageCount"] == 5
    bad = user.client.post("/api/v1/search", json={"query": "x", "analytics": "sometimes"}, headers=headers)
    assert bad.status_code == 400
