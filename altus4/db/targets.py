"""Connections to users' own MySQL databases (the search targets).

Explicit connect/read timeouts and utf8mb4 on every connection; `ssl: true`
means a verified TLS connection (CA from DATABASE_SSL_CA or the system store,
host name checked), and a server without TLS is an error, never a silent
downgrade. Errors come back as `TargetError` with a message safe to show the
owner (no password, no stack).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import pymysql

from altus4.config import Settings
from altus4.db import sql


class TargetError(Exception):
    """A connected database could not be reached or queried; `str()` is safe to return to its owner."""


class HostNotAllowed(Exception):
    pass


@dataclass(frozen=True)
class TargetSpec:
    id: str
    host: str
    port: int
    database: str
    username: str
    password: str
    ssl: bool
    replicas: tuple[tuple[str, int], ...] = ()  # read replicas of this database, searched instead of it


def check_host_allowed(host: str, allowlist: tuple[str, ...]) -> None:
    """:raise HostNotAllowed: when an allowlist is configured and `host` is outside it.

    Names match `*.example.com` style patterns; CIDR entries are checked against
    every address the name resolves to, so a friendly name cannot smuggle in an
    internal address.
    """
    if not allowlist or "*" in allowlist:
        return
    lowered = host.lower().strip("[]")
    if any(fnmatch.fnmatch(lowered, entry.lower()) for entry in allowlist if "/" not in entry):
        return
    networks = [ipaddress.ip_network(e, strict=False) for e in allowlist if "/" in e]
    if networks:
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(lowered, None)}
        except socket.gaierror:
            raise HostNotAllowed(f"Host {host!r} does not resolve") from None
        if addresses and all(any(ipaddress.ip_address(str(a).split("%")[0]) in n for n in networks) for a in addresses):
            return
    raise HostNotAllowed(f"Host {host!r} is not in ALLOWED_DATABASE_HOSTS")


def connect_kwargs(spec: TargetSpec, settings: Settings, read_timeout: float | None = None) -> dict[str, Any]:
    kwargs = sql.client_options(
        spec.host,
        spec.port,
        spec.username,
        spec.password,
        spec.database,
        settings.connection_timeout,
        read_timeout or 30,
    )
    if spec.ssl:
        kwargs.update(ssl_verify_cert=True, ssl_verify_identity=True)
        if settings.database_ssl_ca:
            kwargs["ssl_ca"] = settings.database_ssl_ca
    # without ssl PyMySQL still upgrades to TLS when the server offers it (unverified, but not plaintext)
    return kwargs


def connect(spec: TargetSpec, settings: Settings, read_timeout: float | None = None) -> pymysql.Connection:
    """:raise TargetError: with a message fit for the connection's owner."""
    try:
        return pymysql.connect(**connect_kwargs(spec, settings, read_timeout))
    except pymysql.MySQLError as exc:
        raise TargetError(describe_error(exc, spec)) from None
    except (OSError, ValueError) as exc:  # certificate files, socket errors outside PyMySQL's wrapping
        raise TargetError(f"Cannot connect to {spec.host}:{spec.port}: {exc}") from None


def describe_error(exc: BaseException, spec: TargetSpec) -> str:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    if code == 2026 or "SSL" in text or "TLS" in text or "certificate" in text.lower():
        if "not support" in text.lower() or "doesn't support" in text.lower():
            return f"TLS was requested but the server at {spec.host}:{spec.port} does not support it"
        return f"TLS connection to {spec.host}:{spec.port} failed: {text}"
    if code in (1969, 3024):  # MariaDB max_statement_time / MySQL max_execution_time
        return "the query exceeded the server-side time limit"
    if code == 2003:
        return f"Cannot reach {spec.host}:{spec.port} (connection refused or timed out)"
    if code == 1045:
        return f"Access denied for user {spec.username!r}"
    if code == 1049:
        return f"Unknown database {spec.database!r}"
    if code == 1044:
        return f"User {spec.username!r} has no access to database {spec.database!r}"
    return f"MySQL error {code}: {text}" if code else text


def ping(spec: TargetSpec, settings: Settings) -> None:
    conn = connect(spec, settings, read_timeout=settings.connection_timeout)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    except pymysql.MySQLError as exc:
        raise TargetError(describe_error(exc, spec)) from None
    finally:
        conn.close()
