"""Connections to users' own MySQL databases (the search targets).

Explicit connect/read timeouts and utf8mb4 on every connection; `ssl: true`
means a verified TLS connection (CA from DATABASE_SSL_CA or the system store,
host name checked), and a server without TLS is an error, never a silent
downgrade. Errors come back as `TargetError` with a message safe to show the
owner (no password, no stack).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

import pymysql

from altus4.config import Settings
from altus4.db import sql
from altus4.db.host_policy import HostNotAllowed, check_host_allowed


class TargetError(Exception):
    """A connected database could not be reached or queried; `str()` is safe to return to its owner."""


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


def connect_kwargs(spec: TargetSpec, settings: Settings, read_timeout: float | None = None) -> dict[str, Any]:
    """Options for a tenant's database, its host checked again now (a name may resolve elsewhere than when it
    was saved) and, without TLS, pinned to the address that was checked (no second, different answer).

    :raise HostNotAllowed: the host is not allowed (any more).
    """
    try:
        checked = check_host_allowed(spec.host, settings)
    except HostNotAllowed as exc:
        raise TargetError(str(exc)) from None
    kwargs = sql.client_options(
        checked[0] if checked and not spec.ssl else spec.host,
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


# errors before a MySQL server has answered its handshake: a refused port, a silent one, one that speaks
# something else. They get one message, so testing a connection cannot tell them apart (a port scanner).
_UNREACHABLE = {2003, 2006, 2013, 2055}


def _unreachable(spec: TargetSpec) -> str:
    return f"Cannot reach a MySQL server at {spec.host}:{spec.port} (refused, timed out or not MySQL)"


def connect(spec: TargetSpec, settings: Settings, read_timeout: float | None = None) -> pymysql.Connection:
    """:raise TargetError: with a message fit for the connection's owner."""
    try:
        return pymysql.connect(**connect_kwargs(spec, settings, read_timeout))
    except pymysql.err.OperationalError as exc:
        raise TargetError(describe_error(exc, spec)) from None
    except pymysql.MySQLError as exc:  # a peer that is not MySQL: PyMySQL's protocol errors
        if exc.args and exc.args[0] in (1045, 1044, 1049, 1698):
            raise TargetError(describe_error(exc, spec)) from None
        raise TargetError(_unreachable(spec)) from None
    except OSError as exc:  # socket errors outside PyMySQL's wrapping; certificate files
        if isinstance(exc, FileNotFoundError | PermissionError):
            raise TargetError(f"Cannot read the TLS files for {spec.host}:{spec.port}: {exc.strerror}") from None
        raise TargetError(_unreachable(spec)) from None
    except (ValueError, struct.error, IndexError, UnicodeError):  # garbage where a handshake should be
        raise TargetError(_unreachable(spec)) from None


def describe_error(exc: BaseException, spec: TargetSpec) -> str:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    if code == 2026 or "SSL" in text or "TLS" in text or "certificate" in text.lower():
        if "not support" in text.lower() or "doesn't support" in text.lower():
            return f"TLS was requested but the server at {spec.host}:{spec.port} does not support it"
        return f"TLS connection to {spec.host}:{spec.port} failed: {text}"
    if code in (1969, 3024):  # MariaDB max_statement_time / MySQL max_execution_time
        return "the query exceeded the server-side time limit"
    if code in _UNREACHABLE:
        return _unreachable(spec)
    if code in (1045, 1698):  # 1698: auth plugin refused (unix_socket...): the server quotes the user back
        return f"Access denied for user {spec.username!r}"
    if code == 1049:
        return f"Unknown database {spec.database!r}"
    if code == 1044:
        return f"User {spec.username!r} has no access to database {spec.database!r}"
    if code == 1300:  # the server quotes the offending bytes of our handshake back
        return "The server refused a character in the username, password or database name (not valid utf8mb4)"
    text = _printable(text)
    return f"MySQL error {code}: {text}" if code else text


_ESCAPED_BYTES = re.compile(r"'[^']*\\x[0-9A-Fa-f]{2}[^']*'")  # '...\x14\x0B...': bytes the server echoes
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _printable(text: str, limit: int = 300) -> str:
    """A server message fit to show its owner: no quoted protocol bytes, no control characters, bounded."""
    text = " ".join(_CONTROL.sub(" ", _ESCAPED_BYTES.sub("'…'", text)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ping(spec: TargetSpec, settings: Settings) -> None:
    conn = connect(spec, settings, read_timeout=settings.connection_timeout)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    except pymysql.MySQLError as exc:
        raise TargetError(describe_error(exc, spec)) from None
    finally:
        conn.close()
