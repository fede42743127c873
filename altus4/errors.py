"""The one exception family the API raises, and the one place that maps it to HTTP.

Services raise these; `altus4.api.envelope` renders them. Anything else that
escapes a view is logged with its traceback and answered as INTERNAL_ERROR.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 500
    code = "INTERNAL_ERROR"
    message = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details
        self.headers = headers or {}


class ValidationFailed(ApiError):
    status, code, message = 400, "VALIDATION_ERROR", "Invalid request parameters"


class Unauthorized(ApiError):
    status, code, message = 401, "UNAUTHORIZED", "Authentication required"


class InvalidApiKey(Unauthorized):
    code, message = "INVALID_API_KEY", "Missing or invalid API key"


class Forbidden(ApiError):
    status, code, message = 403, "INSUFFICIENT_PERMISSIONS", "Insufficient permissions"


class NotFound(ApiError):
    status, code, message = 404, "NOT_FOUND", "Resource not found"


class Conflict(ApiError):
    status, code, message = 409, "CONFLICT", "Resource already exists"


class RateLimited(ApiError):
    status, code, message = 429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded"


class ServiceUnavailable(ApiError):
    """An infrastructure dependency (metadata DB, pool) cannot serve right now; clients may retry."""

    status, code, message = 503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable"

    def __init__(self, message: str | None = None, *, retry_after: int = 1, **kwargs):
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(retry_after))


class DatabaseUnavailable(ServiceUnavailable):
    code, message = "DATABASE_UNAVAILABLE", "The metadata database is unavailable"


class WriteInterrupted(DatabaseUnavailable):
    """The metadata server went away inside a write's transaction: it may or may not have committed, so only
    a write that is safe to repeat is retried (`Database.write_retrying`)."""

    message = "The metadata database went away during this write; it may not have been applied, retry it"


class UpstreamFailed(ApiError):
    """Every connected database a request needed failed."""

    status, code, message = 502, "UPSTREAM_ERROR", "The connected databases could not be queried"
