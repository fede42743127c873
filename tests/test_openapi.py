"""The served OpenAPI document is valid and describes exactly the routes the app has."""

import re

from openapi_spec_validator import validate


def _app_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+:)?[a-z_]+>", "{}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def _spec_routes(spec) -> set[tuple[str, str]]:
    routes = set()
    for path, item in spec["paths"].items():
        for method in item:
            if method in {"get", "post", "put", "delete", "patch"}:
                routes.add((re.sub(r"\{[A-Za-z]+\}", "{}", path), method))
    return routes


def test_spec_is_valid_openapi(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    validate(spec)
    assert spec["info"]["version"] == client.get("/health").get_json()["meta"]["version"]


def test_spec_matches_the_routes(app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert _spec_routes(spec) == _app_routes(app)


def test_secured_operations_match_route_auth(app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        kind = app.view_functions[rule.endpoint]._altus4_auth
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", "{}", rule.rule)
        item = next(v for p, v in spec["paths"].items() if re.sub(r"\{[A-Za-z]+\}", "{}", p) == path)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            security = item[method.lower()].get("security", [])
            schemes = {name for requirement in security for name in requirement}
            expected = {"public": set(), "user": {"bearerAuth"}, "admin": {"bearerAuth"}}.get(kind, {"apiKeyAuth"})
            if kind.endswith(":tenant_tokens"):  # search and suggestions take tenant tokens too
                expected = {"apiKeyAuth", "tenantToken"}
            assert schemes == expected, (rule.rule, method, kind)
