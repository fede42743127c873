"""What existing Altus 4 clients send, answered as they expect: axios/qs bracket arrays, trailing slashes,
the official SDK's own paths, and health checks that read a top-level `status`."""

from __future__ import annotations


def test_bracket_arrays_are_the_same_filter(user, client, settings, targets):
    user.connect_database(settings, targets["a"])
    headers = user.key_headers()
    plain = client.get("/api/v1/search/suggestions?query=gev&tables=nope", headers=headers).get_json()
    bracket = client.get("/api/v1/search/suggestions?query=gev&tables%5B%5D=nope", headers=headers).get_json()
    indexed = client.get("/api/v1/search/suggestions?query=gev&tables%5B0%5D=nope", headers=headers).get_json()
    assert plain["data"] == bracket["data"] == indexed["data"]
    unfiltered = client.get("/api/v1/search/suggestions?query=gev", headers=headers).get_json()
    assert unfiltered["data"] != bracket["data"]  # the filter was applied, not dropped
    r = client.get("/api/v1/search/suggestions?query=gev&databases%5B%5D=xyz", headers=headers)
    assert r.status_code == 400 and r.get_json()["error"]["details"][0]["field"].startswith("databases")


def test_trailing_slashes_match(user, client, settings, targets):
    user.connect_database(settings, targets["a"])
    assert user.call("GET", "/api/v1/keys/").status_code == 200
    r = client.post("/api/v1/search/", json={"query": "gevent workers"}, headers=user.key_headers())
    assert r.status_code == 200 and r.get_json()["data"]["totalCount"] >= 1


def test_the_sdks_own_paths_answer(user, client):
    assert client.get("/api/v1/health").get_json()["data"]["status"] == "healthy"
    assert user.call("GET", "/api/v1/analytics/history").get_json()["data"].keys() >= {"items", "total"}
    trends = user.call("GET", "/api/v1/analytics/trends?period=week")
    assert trends.status_code == 200
    assert (
        trends.get_json()["data"] == user.call("GET", "/api/v1/analytics/search-trends?period=week").get_json()["data"]
    )


def test_health_has_status_at_the_top_level_too(client):
    body = client.get("/health").get_json()
    assert body["success"] is True and body["data"]["status"] == "healthy"
    assert body["status"] == "healthy" and body["version"] == body["data"]["version"]
    assert body["timestamp"] == body["meta"]["timestamp"] and isinstance(body["uptime"], float)
