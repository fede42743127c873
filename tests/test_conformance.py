"""The original Altus 4 contract (0.4.0) as a test: every operation it describes, called the way a client
written against it calls it, each response validated against the original's schema for its status.

Anything that differs fails, unless it is one of the deliberate differences listed (with reasons) in the
service's own OpenAPI description (`info.x-deliberate-differences`), which the README repeats.
"""

from __future__ import annotations

import fnmatch
import uuid
from dataclasses import dataclass, field

import pytest
from conftest import TARGET_A, TARGET_B, connection_body, make_settings
from openapi_schema_validator import OAS30Validator
from reference import original_spec

from altus4 import create_app
from altus4.api.docs import load_spec

PASSWORD = "correct horse battery"


def differences() -> list[dict]:
    return load_spec()["info"]["x-deliberate-differences"]


def _excused(operation: str, status: int, where: str) -> bool:
    """A schema mismatch at `where` (a '/'-joined instance path) that a listed difference covers."""
    for diff in differences():
        for case in diff.get("responses", []):
            ops, statuses, paths = case["operations"], case.get("statuses", ["*"]), case["at"]
            if (
                any(fnmatch.fnmatchcase(operation, op) for op in ops)
                and any(fnmatch.fnmatchcase(str(status), s) for s in statuses)
                and any(where == p or fnmatch.fnmatchcase(where, p) for p in paths)
            ):
                return True
    return False


@dataclass
class Contract:
    """Calls operations of the original spec and collects every way a response departs from it."""

    client: object
    spec: dict = field(default_factory=original_spec)
    called: set[str] = field(default_factory=set)
    departures: list[str] = field(default_factory=list)

    def call(self, method: str, template: str, expect: int, token: str | None = None, path: str | None = None, **kw):
        operation = f"{method} {template}"
        if expect < 400 and "json" in kw:
            self.check_request(operation, kw["json"])
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.client.open(path or template, method=method, headers=headers, **kw)
        body = r.get_json(silent=True)
        assert r.status_code == expect, (operation, r.status_code, body, self.departures)
        self.called.add(operation)
        self.check(operation, r.status_code, body)
        return body

    def _validator(self, schema: dict) -> OAS30Validator:
        return OAS30Validator(
            {"components": self.spec["components"], "allOf": [schema]}, format_checker=OAS30Validator.FORMAT_CHECKER
        )

    def check_request(self, operation: str, sent: dict) -> None:
        """The test's own requests are valid by the original, or they would not be what its clients send."""
        method, template = operation.split(" ", 1)
        original = self.spec["paths"][template][method.lower()]
        if "requestBody" not in original:  # a body the original did not take: a listed difference only
            assert any(operation in d.get("requests", []) for d in differences()), (operation, sent)
            return
        schema = original["requestBody"]["content"]["application/json"]["schema"]
        assert not list(self._validator(schema).iter_errors(sent)), (operation, sent)

    def check(self, operation: str, status: int, body) -> None:
        method, template = operation.split(" ", 1)
        responses = self.spec["paths"][template][method.lower()]["responses"]
        if str(status) not in responses:
            if not _excused(operation, status, "(status)"):
                self.departures.append(f"{operation}: status {status} is not in the original")
            return
        response = responses[str(status)]
        if "$ref" in response:
            response = self.spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        schema = response["content"]["application/json"]["schema"]
        for error in self._validator(schema).iter_errors(body):
            where = "/".join(str(p) for p in error.absolute_path)
            if not _excused(operation, status, where):
                self.departures.append(f"{operation} → {status} at /{where}: {error.message[:200]}")

    def operations(self) -> set[str]:
        return {
            f"{m.upper()} {p}"
            for p, item in self.spec["paths"].items()
            for m in item
            if m in ("get", "post", "put", "delete")
        }


@pytest.fixture
def contract(client):
    return Contract(client)


def _register(c: Contract) -> tuple[str, str]:
    email = f"conform-{uuid.uuid4().hex[:10]}@example.com"
    body = c.call(
        "POST", "/api/v1/auth/register", 201, json={"email": email, "password": PASSWORD, "name": "Ada", "role": "user"}
    )
    return email, body["data"]["token"]


def test_every_operation_of_the_original_contract(contract, app, settings, targets):
    c = contract
    missing = str(uuid.uuid4())
    c.call("GET", "/health", 200)
    c.call("GET", "/api/v1/management/health", 200)

    # accounts
    email, token = _register(c)
    c.call("POST", "/api/v1/auth/register", 409, json={"email": email, "password": PASSWORD, "name": "Ada"})
    c.call("POST", "/api/v1/auth/register", 400, json={"email": "not-an-email", "password": PASSWORD, "name": "A"})
    token = c.call("POST", "/api/v1/auth/login", 200, json={"email": email, "password": PASSWORD})["data"]["token"]
    c.call("POST", "/api/v1/auth/login", 400, json={"email": email})
    c.call("POST", "/api/v1/auth/login", 401, json={"email": email, "password": "wrong password!"})
    c.call("GET", "/api/v1/auth/profile", 200, token)
    c.call("GET", "/api/v1/auth/profile", 401)
    c.call("PUT", "/api/v1/auth/profile", 200, token, json={"name": "Ada Lovelace"})
    c.call("PUT", "/api/v1/auth/profile", 400, token, json={"email": "nope"})
    c.call("GET", "/api/v1/management/migration-status", 200, token)
    c.call("POST", "/api/v1/management/setup", 201, token)
    c.call("POST", "/api/v1/management/setup", 409, token)

    # keys
    key_body = {
        "name": "ci key",
        "environment": "test",
        "permissions": ["search", "analytics"],
        "rateLimitTier": "free",
    }
    created = c.call("POST", "/api/v1/keys", 201, token, json=key_body)["data"]
    key_id, secret = created["apiKey"]["id"], created["secretKey"]
    c.call("POST", "/api/v1/keys", 400, token, json={"name": "no environment"})
    c.call("GET", "/api/v1/keys", 200, token)
    one = "/api/v1/keys/{keyId}"
    c.call("PUT", one, 200, token, path=f"/api/v1/keys/{key_id}", json={"name": "ci key renamed"})
    c.call("PUT", one, 400, token, path=f"/api/v1/keys/{key_id}", json={"permissions": ["fly"]})
    c.call("PUT", one, 404, token, path=f"/api/v1/keys/{missing}", json={"name": "gone key"})
    usage = "/api/v1/keys/{keyId}/usage"
    c.call("GET", usage, 200, token, path=f"/api/v1/keys/{key_id}/usage?days=7")
    c.call("GET", usage, 400, token, path=f"/api/v1/keys/{key_id}/usage?days=0")
    c.call("GET", usage, 404, token, path=f"/api/v1/keys/{missing}/usage")
    regen = "/api/v1/keys/{keyId}/regenerate"
    regenerated = c.call("POST", regen, 200, token, path=f"/api/v1/keys/{key_id}/regenerate")["data"]
    secret, key_id = regenerated["secretKey"], regenerated["apiKey"]["id"]  # a new key replaces the old
    c.call("POST", regen, 404, token, path=f"/api/v1/keys/{missing}/regenerate")

    # databases
    conn = c.call("POST", "/api/v1/databases", 201, token, json=connection_body(settings, TARGET_A, ssl=False))["data"]
    second = c.call("POST", "/api/v1/databases", 201, token, json=connection_body(settings, TARGET_B, ssl=False))[
        "data"
    ]
    c.call("POST", "/api/v1/databases", 400, token, json={"name": "no host"})
    c.call("GET", "/api/v1/databases", 200, token)
    c.call("GET", "/api/v1/databases/status", 200, token)
    db = "/api/v1/databases/{connectionId}"
    c.call("GET", db, 200, token, path=f"/api/v1/databases/{conn['id']}")
    c.call("GET", db, 404, token, path=f"/api/v1/databases/{missing}")
    c.call("PUT", db, 200, token, path=f"/api/v1/databases/{conn['id']}", json={"name": "shop"})
    c.call("PUT", db, 400, token, path=f"/api/v1/databases/{conn['id']}", json={"port": 0})
    c.call("PUT", db, 404, token, path=f"/api/v1/databases/{missing}", json={"name": "x"})
    tested = "/api/v1/databases/{connectionId}/test"
    c.call("POST", tested, 200, token, path=f"/api/v1/databases/{conn['id']}/test")
    c.call("POST", tested, 404, token, path=f"/api/v1/databases/{missing}/test")
    schema = "/api/v1/databases/{connectionId}/schema"
    c.call("GET", schema, 200, token, path=f"/api/v1/databases/{conn['id']}/schema")
    c.call("GET", schema, 404, token, path=f"/api/v1/databases/{missing}/schema")

    # search, with the API key
    query = {"query": "gevent workers", "databases": [conn["id"], second["id"]], "searchMode": "natural", "limit": 5}
    pages = [
        c.call("POST", "/api/v1/search", 200, secret, json={**query, "limit": 20})["data"]["results"],
        c.call("POST", "/api/v1/search", 200, secret, json={**query, "includeAnalytics": True, "offset": 5})["data"][
            "results"
        ],
    ]
    for results in pages:  # clients key lists and caches on ids; the original always has categories
        assert len({r["id"] for r in results}) == len(results) > 1
        assert all(isinstance(r["categories"], list) and r["categories"] for r in results)
    assert len({r["rowId"] for r in pages[0]}) < len(pages[0])  # row keys repeat across tables: ids do not
    assert [r["id"] for r in pages[0][5:10]] == [r["id"] for r in pages[1]]  # and stay the same across pages
    c.call(
        "POST",
        "/api/v1/search",
        200,
        secret,
        json={"query": "+mysql -redis", "searchMode": "boolean", "databases": [], "tables": [], "columns": []},
    )
    c.call("POST", "/api/v1/search", 400, secret, json={"query": ""})
    c.call("POST", "/api/v1/search", 401, json={"query": "mysql"})
    c.call("POST", "/api/v1/search", 401, token, json={"query": "mysql"})
    analytics_only = c.call("POST", "/api/v1/keys", 201, token, json={**key_body, "permissions": ["analytics"]})
    c.call("POST", "/api/v1/search", 403, analytics_only["data"]["secretKey"], json={"query": "mysql"})
    c.call("GET", "/api/v1/search/suggestions", 200, secret, path="/api/v1/search/suggestions?query=gev")
    c.call(
        "GET",
        "/api/v1/search/suggestions",
        200,
        secret,
        path=f"/api/v1/search/suggestions?query=gev&databases={conn['id']}&tables=kb",
    )
    c.call("GET", "/api/v1/search/suggestions", 400, secret, path="/api/v1/search/suggestions")
    analyze = {"query": "gevent workers", "databases": [conn["id"]]}
    c.call("POST", "/api/v1/search/analyze", 200, secret, json=analyze)
    c.call("POST", "/api/v1/search/analyze", 400, secret, json={"query": "gevent"})
    c.call("POST", "/api/v1/search/analyze", 403, analytics_only["data"]["secretKey"], json=analyze)
    c.call("GET", "/api/v1/search/trends", 200, secret)
    c.call("GET", "/api/v1/search/history", 200, secret, path="/api/v1/search/history?limit=10&offset=0")
    c.call("GET", "/api/v1/search/history", 401)

    # analytics, with the JWT
    period = "?period=week"
    dated = "?startDate=2026-01-01&endDate=2026-12-31"
    for name in ("search-trends", "performance", "popular-queries"):
        c.call("GET", f"/api/v1/analytics/{name}", 200, token, path=f"/api/v1/analytics/{name}{period}")
        c.call("GET", f"/api/v1/analytics/{name}", 200, token, path=f"/api/v1/analytics/{name}{dated}")
    c.call("GET", "/api/v1/analytics/popular-queries", 200, token, path="/api/v1/analytics/popular-queries?limit=5")
    history = "/api/v1/analytics/search-history"
    c.call("GET", history, 200, token, path=f"{history}?limit=50&offset=0")
    c.call("GET", "/api/v1/analytics/insights", 200, token)
    c.call("GET", "/api/v1/analytics/dashboard", 200, token)
    c.call("GET", "/api/v1/analytics/dashboard", 401)
    for name in ("system-overview", "user-activity", "performance-metrics"):
        c.call("GET", f"/api/v1/analytics/admin/{name}", 403, token)
    app.extensions["altus4"].users.promote(email)
    for name in ("system-overview", "user-activity", "performance-metrics"):
        c.call("GET", f"/api/v1/analytics/admin/{name}", 200, token)

    # endings
    pw = "/api/v1/auth/change-password"
    c.call("POST", pw, 400, token, json={"currentPassword": PASSWORD, "newPassword": "short"})
    c.call("POST", pw, 401, token, json={"currentPassword": "not the password", "newPassword": "a new password 1"})
    changed = c.call("POST", pw, 200, token, json={"currentPassword": PASSWORD, "newPassword": "a new password 1"})
    token = changed["data"].get("token", token)
    token = c.call("POST", "/api/v1/auth/refresh", 200, token)["data"]["token"]
    c.call("POST", "/api/v1/auth/refresh", 401)
    c.call("DELETE", db, 200, token, path=f"/api/v1/databases/{second['id']}")
    c.call("DELETE", db, 404, token, path=f"/api/v1/databases/{second['id']}")
    c.call("DELETE", one, 200, token, path=f"/api/v1/keys/{key_id}")
    c.call("DELETE", one, 404, token, path=f"/api/v1/keys/{missing}")
    c.call("POST", "/api/v1/search", 401, secret, json={"query": "mysql"})
    c.call("POST", "/api/v1/auth/logout", 200, token)
    c.call("POST", "/api/v1/auth/logout", 401, token)
    _, other = _register(c)
    c.call("DELETE", "/api/v1/auth/account", 400, other)  # `reauthentication`: the password is needed
    c.call("DELETE", "/api/v1/auth/account", 200, other, json={"currentPassword": PASSWORD})
    c.call("DELETE", "/api/v1/auth/account", 401, other, json={"currentPassword": PASSWORD})

    assert c.departures == [], "\n".join(c.departures)
    assert c.called == c.operations()


def test_rate_limited_search_answers_as_the_original_does(migrated, targets):
    app = create_app(make_settings(RATE_LIMIT_FREE="2"))
    try:
        c = Contract(app.test_client())
        _, token = _register(c)
        secret = c.call("POST", "/api/v1/keys", 201, token, json={"name": "limited", "environment": "test"})["data"]
        c.call("POST", "/api/v1/databases", 201, token, json=connection_body(migrated, TARGET_A, ssl=False))
        for _ in range(2):
            c.call("POST", "/api/v1/search", 200, secret["secretKey"], json={"query": "gevent"})
        c.call("POST", "/api/v1/search", 429, secret["secretKey"], json={"query": "gevent"})
        assert c.departures == [], "\n".join(c.departures)
    finally:
        app.extensions["altus4"].close()


def test_every_difference_has_a_reason_and_is_in_the_readme(readme_text):
    listed = differences()
    assert listed and len({d["id"] for d in listed}) == len(listed)
    for diff in listed:
        assert len(diff["reason"]) > 20, diff["id"]
        assert f"`{diff['id']}`" in readme_text, f"README does not list the deliberate difference {diff['id']}"


@pytest.fixture
def readme_text() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[1] / "README.md").read_text()
