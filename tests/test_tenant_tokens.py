"""Tenant tokens: a browser gets a token its application minted offline, and never sees another tenant's row."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from click.testing import CliRunner
from conftest import connect_admin, env_for_tests, make_settings, register
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from test_structured_search import SHOP_A, SHOP_B, shop  # noqa: F401 - the fixture, shared

from altus4 import create_app
from altus4.cli import main
from altus4.security.tenant_tokens import mint


@pytest.fixture(scope="module")
def tenancy(migrated, shop, settings):  # noqa: F811 - `shop` is the fixture imported above
    """A cached app (the token's rule must be part of every cache key), one owner with both shops and a key."""
    app = create_app(make_settings(SEARCH_CACHE_TTL="300"))
    owner = register(app.test_client())
    owner.dbs = {name: owner.connect_database(settings, name)["id"] for name in (SHOP_A, SHOP_B)}
    owner.secret, owner.key = owner.create_key(permissions=["search"], rateLimitTier="enterprise")
    yield app, owner
    app.extensions["altus4"].close()


def _token(owner, rules, **extra) -> str:
    return mint(owner.secret, owner.key["id"], rules, **extra)


def _search(app, token: str, status: int = 200, **body):
    r = app.test_client().post("/api/v1/search", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == status, r.get_json()
    return r.get_json()["data"] if status == 200 else r.get_json()["error"]


def test_a_token_searches_only_its_tenants_rows(tenancy):
    app, owner = tenancy
    for tenant in (1, 2):
        token = _token(owner, {"*": {"filter": f"tenant_id = {tenant}"}})
        data = _search(app, token, query="wireless", limit=100)
        assert data["results"] and all(r["data"]["tenant_id"] == tenant for r in data["results"])
        assert {r["table"] for r in data["results"]} <= {"products", "articles"}
        again = _search(app, token, query="wireless", limit=100)  # cached now: still this tenant's
        assert again["cached"] is True and all(r["data"]["tenant_id"] == tenant for r in again["results"])


def test_the_holder_narrows_but_never_widens_the_rule(tenancy):
    app, owner = tenancy
    token = _token(owner, {"*": {"filter": "tenant_id = 3"}})
    for escape in ("tenant_id = 1 OR tenant_id = 2", "NOT tenant_id = 3", ") OR (1 = 1", "tenant_id != 3"):
        r = app.test_client().post(
            "/api/v1/search", json={"query": "wireless", "filter": escape}, headers={"Authorization": f"Bearer {token}"}
        )
        if r.status_code == 200:
            assert all(row["data"]["tenant_id"] == 3 for row in r.get_json()["data"]["results"]), escape
        else:
            assert r.status_code == 400, r.get_json()
    narrowed = _search(app, token, query="wireless", filter="price < 50", limit=100)
    assert all(r["data"]["tenant_id"] == 3 and r["data"]["price"] < 50 for r in narrowed["results"])
    faceted = _search(app, token, query="", filter="price > 0", facets=["tenant_id"], tables=["products"])
    assert list(faceted["facetDistribution"]["tenant_id"]) == ["3"]


def test_a_token_reaches_only_the_databases_and_tables_its_rules_name(tenancy):
    app, owner = tenancy
    a, b = owner.dbs[SHOP_A], owner.dbs[SHOP_B]
    token = _token(owner, {a: {"filter": "tenant_id = 1", "tables": ["articles"]}})
    data = _search(app, token, query="wireless", limit=100)
    assert {r["database"] for r in data["results"]} == {a} and {r["table"] for r in data["results"]} == {"articles"}
    assert _search(app, token, 403, query="wireless", databases=[b])["code"] == "INSUFFICIENT_PERMISSIONS"
    both = _token(owner, {"*": {"filter": "tenant_id = 2"}, b: {"filter": "tenant_id = 4"}})
    data = _search(app, both, query="wireless", limit=100)
    for r in data["results"]:
        assert r["data"]["tenant_id"] == (4 if r["database"] == b else 2)


def test_refused_tokens(tenancy, settings):
    app, owner = tenancy
    rules = {"*": {"filter": "tenant_id = 1"}}
    expired = _token(owner, rules, expires_at=int(time.time()) - 5)
    assert _search(app, expired, 401, query="wireless")["code"] == "TOKEN_EXPIRED"
    good = _token(owner, rules)
    header, payload, signature = good.split(".")
    forged_payload = jwt.encode(
        {"apiKeyId": owner.key["id"], "searchRules": {"*": {}}}, "a guessed secret of 32 characters!"
    ).split(".")[1]
    for tampered in (f"{header}.{forged_payload}.{signature}", good[:-2] + ("AA" if good[-2:] != "AA" else "BB")):
        assert _search(app, tampered, 401, query="wireless")["code"] == "INVALID_TENANT_TOKEN"
    unsigned = jwt.encode({"apiKeyId": owner.key["id"], "searchRules": {"*": {}}}, None, algorithm="none")
    assert _search(app, unsigned, 401, query="wireless")["code"] in ("INVALID_TENANT_TOKEN", "INVALID_API_KEY")
    # a key without the search permission, a revoked key, and a key made before tenant tokens
    analytics_secret, analytics_key = owner.create_key(permissions=["analytics"])
    token = mint(analytics_secret, analytics_key["id"], rules)
    assert _search(app, token, 401, query="wireless")["code"] == "INVALID_TENANT_TOKEN"
    secret, key = owner.create_key(permissions=["search"])
    token = mint(secret, key["id"], rules)
    assert _search(app, token, query="wireless")["results"]
    assert owner.call("DELETE", f"/api/v1/keys/{key['id']}").status_code == 200
    assert _search(app, token, 401, query="wireless")["code"] == "INVALID_API_KEY"
    secret, key = owner.create_key(permissions=["search"])
    conn = connect_admin(settings, settings.db_database)
    with conn.cursor() as cur:
        cur.execute("UPDATE api_keys SET sealed_secret = NULL WHERE id = %s", (key["id"],))
    conn.close()
    app.extensions["altus4"].admission.forget(app.extensions["altus4"].keys.get(owner.id, key["id"])["key_hash"])
    error = _search(app, mint(secret, key["id"], rules), 401, query="wireless")
    assert error["code"] == "INVALID_TENANT_TOKEN" and "regenerate" in error["message"]
    bad_rule = _token(owner, {"*": {"filter": "tenant_id = ("}})
    assert _search(app, bad_rule, 401, query="wireless")["code"] == "INVALID_TENANT_TOKEN"


def test_a_token_only_searches(tenancy):
    app, owner = tenancy
    token = _token(owner, {"*": {"filter": "tenant_id = 1"}})
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/search/suggestions?query=wire", headers=auth).status_code == 200
    assert client.get("/api/v1/search/history", headers=auth).status_code == 403
    assert (
        client.post(
            "/api/v1/search/analyze", json={"query": "x", "databases": [owner.dbs[SHOP_A]]}, headers=auth
        ).status_code
        == 403
    )
    for path in ("/api/v1/keys", "/api/v1/auth/profile", "/api/v1/databases", "/api/v1/analytics/dashboard"):
        assert client.get(path, headers=auth).status_code == 401, path


def test_suggestions_under_a_token_come_only_from_its_rows(tenancy, settings):
    app, owner = tenancy
    conn = connect_admin(settings, SHOP_A)
    with conn.cursor() as cur:
        cur.execute("UPDATE articles SET body = CONCAT(body, ' zymurgyfour') WHERE tenant_id = 4")
    conn.close()
    try:
        owner_words = (
            app.test_client()
            .get("/api/v1/search/suggestions?query=zymu", headers={"Authorization": f"Bearer {owner.secret}"})
            .get_json()["data"]["suggestions"]
        )
        assert any("zymurgyfour" in s["text"] for s in owner_words)
        token = _token(owner, {"*": {"filter": "tenant_id = 1"}})
        r = app.test_client().get("/api/v1/search/suggestions?query=zymu", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and not any("zymurgyfour" in s["text"] for s in r.get_json()["data"]["suggestions"])
    finally:
        conn = connect_admin(settings, SHOP_A)
        with conn.cursor() as cur:
            cur.execute("UPDATE articles SET body = REPLACE(body, ' zymurgyfour', '')")
        conn.close()


def test_usage_counts_against_the_parent_key(tenancy):
    app, owner = tenancy
    token = _token(owner, {"*": {"filter": "tenant_id = 1"}})
    before = owner.call("GET", f"/api/v1/keys/{owner.key['id']}/usage").get_json()["data"]["usage"]["requestCount"]
    for _ in range(3):
        _search(app, token, query="lamp")
    after = owner.call("GET", f"/api/v1/keys/{owner.key['id']}/usage").get_json()["data"]["usage"]["requestCount"]
    assert after - before == 3


def test_the_cli_mints_a_token_offline(tenancy):
    app, owner = tenancy
    result = CliRunner().invoke(
        main,
        [
            "tenant-token",
            "--key",
            owner.secret,
            "--key-id",
            owner.key["id"],
            "--filter",
            "tenant_id = 2",
            "--expires-in",
            "60",
        ],
        env=env_for_tests(),
    )
    assert result.exit_code == 0, result.output
    data = _search(app, result.output.strip(), query="wireless", limit=50)
    assert data["results"] and all(r["data"]["tenant_id"] == 2 for r in data["results"])
    bad = CliRunner().invoke(main, ["tenant-token", "--key", owner.secret, "--key-id", "x", "--filter", "a ="])
    assert bad.exit_code != 0 and "filter" in bad.output


# ---- the property: no search under a tenant's token ever sees another tenant's row ----------------------------
COLUMNS = {
    "price": st.integers(0, 600),
    "category": st.sampled_from(["audio", "video", "garden", "books", "zzz"]),
    "in_stock": st.booleans(),
    "status": st.sampled_from(["open", "pending", "closed"]),
}


@st.composite
def _filters(draw) -> str | None:
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        column = draw(st.sampled_from(sorted(COLUMNS)))
        value = draw(COLUMNS[column])
        op = draw(st.sampled_from(["=", "!=", ">", "<=", "IN", "TO", "NULL"]))
        literal = ("true" if value else "false") if isinstance(value, bool) else repr(value)
        if op == "IN":
            parts.append(f"{column} IN [{literal}]")
        elif op == "TO":
            parts.append(f"{column} {literal} TO {literal}" if isinstance(value, int) else f"{column} = {literal}")
        elif op == "NULL":
            parts.append(f"{column} IS {'NOT ' if draw(st.booleans()) else ''}NULL")
        else:
            parts.append(f"{column} {op} {literal}")
        if draw(st.booleans()):
            parts[-1] = f"NOT ({parts[-1]})"
    joiner = draw(st.sampled_from([" AND ", " OR "]))
    return joiner.join(parts) or None


RUNS: list[int] = []


@hypothesis_settings(
    max_examples=2000, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(
    tenant=st.integers(1, 4),
    query=st.sampled_from(["wireless", "lamp camera", "garden hose", "", "+novel -cable", "headphones"]),
    mode=st.sampled_from(["natural", "boolean", "natural", "semantic"]),
    request_filter=_filters(),
    sort=st.sampled_from([None, ["price:asc"], ["created_at:desc", "_score:desc"], ["category:asc"]]),
    page=st.integers(0, 4),
    limit=st.sampled_from([5, 20]),
    facets=st.sampled_from([None, ["tenant_id"], ["category", "tenant_id"]]),
)
def _no_leak(app, owner, tenant, query, mode, request_filter, sort, page, limit, facets):
    token = _token(owner, {"*": {"filter": f"tenant_id = {tenant}"}})
    body = {"query": query, "searchMode": mode, "limit": limit, "offset": page * limit}
    if request_filter:
        body["filter"] = request_filter
    if sort:
        body["sort"] = sort
    if facets:
        body["facets"] = facets
    if not query and not request_filter and not sort:
        body["filter"] = "price >= 0"
    r = app.test_client().post("/api/v1/search", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (200, 400), (body, r.get_json())
    RUNS.append(r.status_code)
    if r.status_code != 200:
        return
    data = r.get_json()["data"]
    assert all(row["data"]["tenant_id"] == tenant for row in data["results"]), (tenant, body)
    if facets and "tenant_id" in data["facetDistribution"]:
        assert set(data["facetDistribution"]["tenant_id"]) <= {str(tenant)}, (tenant, body)


def test_random_searches_under_tenant_tokens_never_see_another_tenant(tenancy):
    app, owner = tenancy
    RUNS.clear()
    _no_leak(app, owner)
    assert len(RUNS) >= 2000 and RUNS.count(200) >= 1500, (len(RUNS), RUNS.count(200))
    print(f"\ntenant tokens: {len(RUNS)} random searches, {RUNS.count(200)} answered, none saw another tenant")


def test_two_tokens_with_different_rules_never_share_a_cached_page(tenancy):
    app, owner = tenancy
    body = {"query": "wireless", "limit": 50, "filter": "price > 1"}
    one = _search(app, _token(owner, {"*": {"filter": "tenant_id = 1"}}), **body)
    two = _search(app, _token(owner, {"*": {"filter": "tenant_id = 2"}}), **body)
    again = _search(app, _token(owner, {"*": {"filter": "tenant_id = 2"}}), **body)
    assert again["cached"] is True and [r["id"] for r in again["results"]] == [r["id"] for r in two["results"]]
    assert {r["data"]["tenant_id"] for r in one["results"]} == {1}
    assert {r["data"]["tenant_id"] for r in two["results"]} == {2}
    plain = app.test_client().post("/api/v1/search", json=body, headers={"Authorization": f"Bearer {owner.secret}"})
    assert {r["data"]["tenant_id"] for r in plain.get_json()["data"]["results"]} > {1, 2}  # the key itself: all


def test_a_key_id_that_is_not_a_key(tenancy):
    app, _ = tenancy
    token = jwt.encode({"apiKeyId": str(uuid.uuid4()), "searchRules": {"*": {}}}, "x" * 32, algorithm="HS256")
    assert _search(app, token, 401, query="wireless")["code"] == "INVALID_TENANT_TOKEN"
