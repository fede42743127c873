"""The response envelope every endpoint answers in: `{success, data|error, meta}`."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from altus4.db.host_policy import HostNotAllowed
from altus4.db.targets import TargetError
from altus4.errors import ApiError, UpstreamFailed, ValidationFailed
from altus4.search.boolean import QuerySyntaxError
from altus4.search.plan import UnknownIdentifier

log = logging.getLogger("altus4.api")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# werkzeug's HTTP errors (routing, body size, method) mapped to our codes
_HTTP_CODES = {
    400: "VALIDATION_ERROR",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMIT_EXCEEDED",
}


def _meta(**extra: Any) -> dict[str, Any]:
    meta = {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestId": getattr(g, "request_id", None),
        "version": current_app.config["ALTUS4_VERSION"],
    }
    started = getattr(g, "started_at", None)
    if started is not None:
        meta["executionTime"] = round((time.perf_counter() - started) * 1000, 2)
    tier = getattr(g, "api_key_tier", None)
    if tier:
        meta["apiKeyTier"] = tier
    meta.update(extra)
    return meta


def ok(
    data: Any = None, status: int = 200, top_level: dict[str, Any] | None = None, **meta: Any
) -> tuple[Response, int]:
    """The success envelope; `top_level` adds fields beside it (only /health does, for older health checks)."""
    envelope = {"success": True, "data": data, "meta": _meta(**meta)}
    if top_level:
        envelope.update(top_level, timestamp=envelope["meta"]["timestamp"])
    return jsonify(envelope), status


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    response = jsonify({"success": False, "error": error, "meta": _meta()})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _on_api_error(err: ApiError) -> Response:
    if err.status >= 500:
        log.warning("request failed: %s %s", err.code, err.message)
    return error_response(err.status, err.code, err.message, err.details, err.headers)


# what the layers below raise in their own terms, and what the client sees: the one place for both
_TRANSLATIONS: dict[type[Exception], Callable[[Any], ApiError]] = {
    TargetError: lambda e: UpstreamFailed(str(e), code="DATABASE_UNREACHABLE"),
    HostNotAllowed: lambda e: ValidationFailed(
        str(e), code="HOST_NOT_ALLOWED", details=[{"field": "host", "code": "host_not_allowed", "message": str(e)}]
    ),
    QuerySyntaxError: lambda e: ValidationFailed(
        f"Malformed boolean query: {e}",
        code="INVALID_QUERY",
        details=[{"field": "query", "code": "query_syntax", "message": e.message, "position": e.position + 1}],
    ),
    UnknownIdentifier: lambda e: ValidationFailed(
        f"Unknown {e.kind}: {', '.join(e.names)}",
        code="UNKNOWN_IDENTIFIER",
        details=[
            {
                "field": e.kind,
                "code": "unknown_identifier",
                "message": f"not in the discovered schema: {', '.join(e.names)}",
                "unknown": e.names,
                "available": e.available,
            }
        ],
    ),
}


def _on_domain_error(err: Exception) -> Response:
    translate = next(f for kind, f in _TRANSLATIONS.items() if isinstance(err, kind))
    return _on_api_error(translate(err))


def _on_http_error(err: HTTPException) -> Response:
    status = err.code or 500
    code = _HTTP_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    headers = {}
    allowed = getattr(err, "valid_methods", None)  # MethodNotAllowed's
    if status == 405 and allowed:
        headers["Allow"] = ", ".join(sorted(allowed))
    message = err.description or err.name
    if status == 404:
        message = f"No route for {request.method} {request.path}"
    elif status == 413:
        message = f"Request body exceeds {current_app.config['MAX_CONTENT_LENGTH']} bytes"
    response = error_response(status, code, message, headers=headers)
    # keep headers a werkzeug exception carries (e.g. rate-limit Retry-After)
    for name, value in err.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _on_unexpected(err: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "INTERNAL_ERROR", "Internal server error")


def _assign_request_id() -> None:
    g.started_at = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else str(uuid.uuid4())


def _common_headers(response: Response) -> Response:
    """The request id echoed; no content-type sniffing of any answer; API answers kept out of every cache
    (some carry secrets: tokens, new API keys; none is meant to be stored)."""
    response.headers["X-Request-ID"] = g.get("request_id", "")
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.before_request(_assign_request_id)
    app.after_request(_common_headers)
    app.register_error_handler(ApiError, _on_api_error)
    for domain_error in _TRANSLATIONS:
        app.register_error_handler(domain_error, _on_domain_error)
    app.register_error_handler(HTTPException, _on_http_error)
    app.register_error_handler(Exception, _on_unexpected)
