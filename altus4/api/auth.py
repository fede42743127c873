"""Authentication and permission as decorators that cannot be forgotten.

Every view must carry exactly one of `public`, `user_required`, `admin_required`
or `api_key_required(...)`; `check_all_routes_declare_auth` fails app start-up
when one does not.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import Flask, Response, g, request

from altus4 import context
from altus4.config import Limit
from altus4.container import services
from altus4.errors import Forbidden, InvalidApiKey, RateLimited, Unauthorized
from altus4.security import tenant_tokens as tenant_token
from altus4.security.api_keys import looks_like_key
from altus4.services.rate_limits import Verdict


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _mark(view: Callable, kind: str) -> Callable:
    view._altus4_auth = kind  # type: ignore[attr-defined]
    return view


def _enforce(verdict: Verdict, message: str, scope: str) -> None:
    g.rate_limit_headers = verdict.headers()
    if not verdict.allowed:
        services().metrics.rate_limited.labels(scope).inc()
        raise RateLimited(
            f"{message} Try again in {verdict.retry_after} seconds.",
            details={"limit": verdict.limit, "resetTime": verdict.reset_at},
            headers=verdict.headers(),
        )


def public(view: Callable) -> Callable:
    return _mark(view, "public")


def ip_limited(limits_setting: str) -> Callable[[Callable], Callable]:
    """A per-client-IP limit (register/login): `limits_setting` names the parsed limits in Settings."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            svc = services()
            limits: tuple[Limit, ...] = getattr(svc.settings, limits_setting)
            bucket = f"ip:{request.endpoint}:{request.remote_addr}"
            _enforce(svc.limiter.hit(bucket, limits), "Too many attempts from this address.", "ip")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def connection_tests_limited(view: Callable) -> Callable:
    """Per account, on what connects to a host the user names (CONNECTION_TEST_RATE_LIMIT): testing
    connections must not make a port scanner. Goes inside `user_required`."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        svc = services()
        verdict = svc.limiter.hit(f"conntest:{g.user['id']}", svc.settings.connection_test_rate_limit)
        _enforce(verdict, "Too many connection tests for this account.", "connection_test")
        return view(*args, **kwargs)

    return wrapper


def _authenticate_user() -> None:
    token = _bearer()
    if token is None:
        raise Unauthorized("Missing bearer token", code="NO_TOKEN")
    if looks_like_key(token):
        raise Unauthorized("This endpoint needs a JWT from /api/v1/auth/login, not an API key", code="INVALID_TOKEN")
    svc = services()
    claims = svc.users.decode_token(token)
    context.bind(claims.user_id)  # before the look-up: it must see this user's own recent writes
    g.user, g.claims = svc.users.live_user(claims), claims
    _enforce(svc.limiter.hit(f"user:{g.user['id']}", svc.settings.user_rate_limit), "Rate limit exceeded.", "user")


def user_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(*args, **kwargs):
        _authenticate_user()
        return view(*args, **kwargs)

    return _mark(wrapper, "user")


def admin_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(*args, **kwargs):
        _authenticate_user()
        if g.user["role"] != "admin":
            raise Forbidden("Administrator role required")
        return view(*args, **kwargs)

    return _mark(wrapper, "admin")


def api_key_required(
    permission: str, prefetch: Callable[[str], list[str]] | None = None, tenant_tokens: bool = False
) -> Callable[[Callable], Callable]:
    """API key bearer auth: a valid key within its tier's rate limit, with the permission; the use is counted.
    `prefetch(user_id)` names Redis keys the view reads next: they come in admission's round trip, in
    `g.prefetched` (see `KeyAdmission.admit`). With `tenant_tokens` (search, suggestions) a tenant token
    signed by a key is taken too, as that key, its rules in `g.tenant_claims`; elsewhere it is refused (403)."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            token = _bearer()
            if token is None:
                raise InvalidApiKey("Missing API key: send 'Authorization: Bearer altus4_sk_…'")
            svc = services()
            g.tenant_claims = None
            if not looks_like_key(token) and tenant_token.looks_like_tenant_token(token):
                if not tenant_tokens:
                    raise Forbidden("A tenant token may only search (POST /search, GET /search/suggestions)")
                principal, verdict, g.tenant_claims = svc.admission.admit_tenant_token(token)
                g.prefetched = {}
            else:
                # a refused request counts against the limit too
                principal, verdict, g.prefetched = svc.admission.admit(token, prefetch)
            context.bind(principal.user_id)
            g.api_key, g.api_key_tier = principal, principal.tier
            _enforce(verdict, "Rate limit exceeded.", f"api_key_{principal.tier}")
            principal.require(permission)
            svc.usage.record_use(principal, request.remote_addr)
            return view(*args, **kwargs)

        return _mark(wrapper, f"api_key:{permission}" + (":tenant_tokens" if tenant_tokens else ""))

    return decorate


def _rate_limit_headers(response: Response) -> Response:
    for name, value in (g.get("rate_limit_headers") or {}).items():
        response.headers[name] = value
    return response


def _open_scope() -> None:
    g.scope_token = context.open_scope()


def _close_scope(_error: BaseException | None) -> None:
    token = g.pop("scope_token", None)
    if token is None:
        return
    scope = context.current()
    try:
        if scope is not None and scope.position:
            services().db.publish(scope)
    finally:
        context.close_scope(token)


def init_app(app: Flask) -> None:
    """Each request runs in its own `altus4.context.Scope`, named after the user once auth knows them."""
    app.before_request(_open_scope)
    app.teardown_request(_close_scope)
    app.after_request(_rate_limit_headers)


def check_all_routes_declare_auth(app: Flask) -> None:
    undeclared = [
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint != "static" and not getattr(view, "_altus4_auth", None)
    ]
    if undeclared:
        raise RuntimeError(f"routes without an auth declaration: {', '.join(sorted(undeclared))}")
