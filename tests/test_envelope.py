"""Every response, success or failure, answers in the envelope with a request id."""

import pytest


def test_health_is_enveloped_and_fast_path(client):
    r = client.get("/health")
    body = r.get_json()
    assert r.status_code == 200
    assert body["success"] is True
    assert body["data"]["status"] == "healthy"
    assert set(body["meta"]) >= {"timestamp", "requestId", "version"}
    assert r.headers["X-Request-ID"] == body["meta"]["requestId"]


def test_request_id_is_taken_from_the_request(client):
    r = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    assert r.get_json()["meta"]["requestId"] == "abc-123"


def test_malformed_request_id_is_replaced(client):
    r = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(r.headers["X-Request-ID"]) == 36


def test_unknown_route_answers_in_envelope(client):
    r = client.get("/api/v1/nope")
    assert r.status_code == 404
    body = r.get_json()
    assert body["success"] is False
    assert body["error"]["code"] == "NOT_FOUND"
    assert "/api/v1/nope" in body["error"]["message"]


def test_wrong_method_answers_in_envelope(client):
    r = client.delete("/api/v1/auth/login")
    assert r.status_code == 405
    assert r.get_json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in r.headers["Allow"]


def test_oversized_body_is_refused(client, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    r = client.post("/api/v1/auth/login", data="x" * (limit + 1), content_type="application/json")
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("payload", ["{not json", "[1, 2]", '"text"'])
def test_non_object_json_is_a_validation_error(client, payload):
    r = client.post("/api/v1/auth/login", data=payload, content_type="application/json")
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "VALIDATION_ERROR"


def test_unexpected_errors_become_internal_error_without_details(migrated):
    from altus4 import create_app
    from altus4.api.auth import public

    app = create_app(migrated)

    @public
    def explode():
        raise RuntimeError("secret internals")

    app.add_url_rule("/__explode", "explode_for_test", explode)
    r = app.test_client().get("/__explode")
    assert r.status_code == 500
    body = r.get_json()
    assert body["error"] == {"code": "INTERNAL_ERROR", "message": "Internal server error"}
    assert "secret internals" not in r.get_data(as_text=True)
