"""The service's own OpenAPI description, fuzzed with schemathesis against the real app, MariaDB and Redis.

Every operation is called with generated requests (valid by the spec, and some not), with real
credentials: a signed-in user's JWT, an admin's JWT and an API key with every permission, and with real
ids of that user's keys and connections substituted into paths now and then. A run fails on a 5xx, a
response whose body does not match its documented schema, a status the operation does not document, a
response that is not JSON where JSON is documented, or a request that is valid by the spec and refused.

Seeded (derandomized): the same cases every run. `FUZZ_EXAMPLES` sets the cases per operation (default
10; with schemathesis's own probes about 1,500 cases in all); `make fuzz` runs a longer, unseeded one.
"""

from __future__ import annotations

import os
import uuid
import zlib

import pytest
import schemathesis
from conftest import connect_admin, make_settings, register
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from altus4 import create_app

pytestmark = pytest.mark.slow  # about six minutes: `make test` runs it, `make test-fast` does not

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
DERANDOMIZE = os.environ.get("FUZZ_RANDOM", "") != "1"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    positive_data_acceptance,
]
# operations that end or change the credentials they are called with run on a throwaway account
DESTRUCTIVE = {
    ("DELETE", "/api/v1/auth/account"),
    ("POST", "/api/v1/auth/change-password"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/refresh"),
    ("PUT", "/api/v1/auth/profile"),
}


class Fixture:
    """A fuzzed app with long-lived credentials and ids to substitute into paths."""

    def __init__(self, app, settings, target: str):
        self.app = app
        self.settings = settings
        self.target = target
        client = app.test_client()
        self.user = register(client)
        self.admin = register(client)
        conn = connect_admin(settings, settings.db_database)
        with conn.cursor() as cur:
            cur.execute("UPDATE users SET role = 'admin' WHERE id = %s", (self.admin.id,))
        conn.close()
        self.connection = self.user.connect_database(settings, target)
        secret, self.key = self.user.create_key(
            permissions=["search", "analytics", "admin"], rateLimitTier="enterprise"
        )
        self.api_key = secret
        self.scratch = register(client)  # owns the keys and connections that calls change or delete

    def throwaway(self):
        return register(self.app.test_client())

    def headers_for(self, case) -> dict[str, str]:
        security = case.operation.definition.raw.get("security") or []
        schemes = {name for requirement in security for name in requirement}
        if "apiKeyAuth" in schemes:
            return {"Authorization": f"Bearer {self.api_key}"}
        if not schemes:
            return {}
        if "/admin/" in case.operation.path:
            return self.admin.headers
        if (case.method.upper(), case.operation.path) in DESTRUCTIVE:
            return self.throwaway().headers
        return self.user.headers


@pytest.fixture(scope="module")
def fuzzed(migrated, targets):
    # generated hosts are refused by name, before any DNS query or connection: traffic stays on this machine
    app = create_app(make_settings(ALLOWED_DATABASE_HOSTS=migrated.db_host))
    yield Fixture(app, migrated, targets["a"])
    app.extensions["altus4"].close()


@pytest.fixture(scope="module")
def fuzz_schema(fuzzed):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzzed.app)


schema = schemathesis.pytest.from_fixture("fuzz_schema")
CASES: dict[str, int] = {}  # operation -> cases sent, this run


def _prepare(case, fuzzed: Fixture, draw: int) -> dict[str, str]:
    """The credentials for this case; half the cases with a path id name a real key or connection.

    Calls that change or delete a key or connection do it to one of a scratch account's own, so the shared
    account keeps a working key and exactly one connection (every search fans out to all of them).
    """
    headers = fuzzed.headers_for(case)
    if not case.path_parameters or draw % 2:
        return headers
    changes = case.method.upper() in ("DELETE", "POST", "PUT")
    owner = fuzzed.scratch if changes else fuzzed.user
    if "keyId" in case.path_parameters:
        key = owner.create_key(rateLimitTier="enterprise")[1] if changes else fuzzed.key
        case.path_parameters["keyId"] = key["id"]
    if "connectionId" in case.path_parameters:
        connection = owner.connect_database(fuzzed.settings, fuzzed.target) if changes else fuzzed.connection
        case.path_parameters["connectionId"] = connection["id"]
    return owner.headers if changes else headers


# Rules the spec states in words, which JSON Schema cannot say: an expiry in the future, startDate not after
# endDate, offset + limit <= 1000, table and column names that exist, a query with a searchable word and
# valid boolean syntax, a host the host policy allows, an e-mail domain that is not special-use. A 400 that
# names only these fields (or carries only these codes) is the documented answer to a request that breaks
# them, not a valid request refused.
QUERY_RULES = {"INVALID_QUERY", "UNKNOWN_IDENTIFIER", "INVALID_FILTER", "INVALID_SORT"}
STATED_RULES: dict[tuple[str, str], set[str]] = {
    # e-mail addresses on special-use domains (.test, .local, .invalid...) are refused when an account is made
    ("POST", "/api/v1/auth/register"): {"email"},
    # a new e-mail needs currentPassword (`reauthentication`)
    ("PUT", "/api/v1/auth/profile"): {"email", "currentPassword"},
    ("POST", "/api/v1/keys"): {"expiresAt"},
    ("PUT", "/api/v1/keys/{keyId}"): {"expiresAt"},
    # an empty query needs a filter or sort; facets must name columns some searched table has, of a type with values;
    # a filter in array form is at most 2,000 characters in all
    ("POST", "/api/v1/search"): {"offset", "query", "facets", "filter", *QUERY_RULES},
    ("POST", "/api/v1/search/analyze"): QUERY_RULES,
    ("POST", "/api/v1/databases"): {"HOST_NOT_ALLOWED"},
    ("PUT", "/api/v1/databases/{connectionId}"): {"HOST_NOT_ALLOWED"},
    ("GET", "/api/v1/search/suggestions"): {"filter", *QUERY_RULES},
    **{
        ("GET", f"/api/v1/analytics/{name}"): {"startDate"}
        for name in ("search-trends", "trends", "usage", "performance", "popular-queries", "zero-result-queries")
        + ("search-history", "history", "admin/user-activity")
    },
}


def _stated_rule(case, response) -> bool:
    if response.status_code != 400:
        return False
    allowed = STATED_RULES.get((case.method.upper(), case.operation.path), set())
    error = response.json()["error"]
    if error["code"] in allowed:
        return True
    details = error.get("details") if isinstance(error.get("details"), list) else []
    fields = {d.get("field") for d in details if isinstance(d, dict)}
    return error["code"] == "VALIDATION_ERROR" and bool(fields) and fields <= allowed


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_holds_its_contract(case, fuzzed):
    label = f"{case.method.upper()} {case.operation.path}"  # unsupported-method probes count apart
    CASES[label] = CASES.get(label, 0) + 1
    headers = _prepare(
        case, fuzzed, uuid.uuid4().int if not DERANDOMIZE else zlib.crc32(repr(case.path_parameters).encode())
    )
    response = case.call(headers=headers)
    checks = [c for c in CHECKS if c is not positive_data_acceptance] if _stated_rule(case, response) else CHECKS
    case.validate_response(response, checks=checks)


def test_the_run_was_big_enough(fuzz_schema, capsys):
    """Runs after the fuzzing above (file order): every operation was called, and enough cases in all."""
    operations = {f"{op.ok().method.upper()} {op.ok().path}" for op in fuzz_schema.get_all_operations()}
    assert len(operations) >= 40
    assert operations <= set(CASES), sorted(operations - set(CASES))
    total = sum(CASES.values())
    with capsys.disabled():  # in the CI log, whatever pytest's capture
        print(f"\nfuzz: {total} cases sent ({len(CASES)} method/path pairs, {len(operations)} documented operations)")

    assert total >= 1000 if EXAMPLES >= 10 else total >= len(operations)
