"""Connections to users' own MySQL databases (the search targets).

Explicit connect/read timeouts and utf8mb4 on every connection; `ssl: true`
means a verified TLS connection (CA from DATABASE_SSL_CA or the system store,
host name checked), and a server without TLS is an error, never a silent
downgrade. Errors come back as `TargetError` with a message safe to show the
owner (no password, no stack).
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
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


def _resolve(host: str) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself). :raise HostNotAllowed: no answer."""
    try:
        return sorted({str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, None)})
    except (socket.gaierror, UnicodeError):
        raise HostNotAllowed(f"Host {host!r} does not resolve") from None


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local (cloud metadata lives at 169.254.169.254), reserved, multicast or unset."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


@functools.lru_cache(maxsize=8)
def _own_addresses(settings: Settings) -> frozenset[str]:
    """The addresses of this service's own metadata databases and Redis servers (never a tenant's target)."""
    hosts = {settings.db_host, settings.redis_host}
    hosts |= {h for h, _ in (*settings.db_read_hosts, *settings.redis_sentinels, *settings.redis_cluster_nodes)}
    found: set[str] = set()
    for host in hosts:
        try:
            found.update(_resolve(host))
        except HostNotAllowed:
            pass
    return frozenset(found)


def check_host_allowed(host: str, settings: Settings) -> list[str] | None:
    """Whether a tenant may connect to `host`; the addresses to connect to when they were checked.

    With `ALLOWED_DATABASE_HOSTS` set, a name matching one of its `*.example.com` patterns is allowed as
    it is (None: connect by name), and otherwise every address the name resolves to must lie in one of
    its CIDRs; `*` allows anything. Without it, production allows only public addresses that are not this
    service's own metadata or Redis servers (no loopback, private, link-local or cloud-metadata targets);
    development allows anything.
    :raise HostNotAllowed: with the reason, fit for the tenant.
    """
    allowlist = settings.allowed_database_hosts
    lowered = host.lower().strip("[]")
    if "*" in allowlist or (not allowlist and settings.development):
        return None
    if any(fnmatch.fnmatch(lowered, entry.lower()) for entry in allowlist if "/" not in entry):
        return None
    if allowlist:
        networks = [ipaddress.ip_network(e, strict=False) for e in allowlist if "/" in e]
        if networks:  # no CIDR listed: nothing to resolve (no DNS query for a name that is refused anyway)
            addresses = _resolve(lowered)
            if all(any(ipaddress.ip_address(a) in n for n in networks) for a in addresses):
                return addresses
        raise HostNotAllowed(f"Host {host!r} is not in ALLOWED_DATABASE_HOSTS")
    addresses = _resolve(lowered)
    own = _own_addresses(settings)
    refused = [a for a in addresses if _internal(ipaddress.ip_address(a)) or a in own]
    if refused:
        raise HostNotAllowed(
            f"Host {host!r} resolves to an internal address ({refused[0]}); this server connects only to public"
            " addresses unless its operator lists others in ALLOWED_DATABASE_HOSTS"
        )
    return addresses


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
