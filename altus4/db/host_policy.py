"""Which hosts a tenant may connect to as "their database".

Two rules, in this order:
1. Never this service's own servers: the metadata primary and replicas, Redis
   (single, Sentinel-discovered master and replicas, Cluster nodes), the
   sentinels, and, when any of those runs on this machine, this machine itself
   (loopback and its own addresses). That holds whatever ALLOWED_DATABASE_HOSTS
   says: an allowlist of `10.0.0.0/8` once let a tenant "connect" to the
   Swarm stack's own MariaDB and probe its Redis. Only ALLOW_OWN_SERVERS=true
   (single-user set-ups, such as `make run`'s demo) lifts it.
2. The allowlist: with ALLOWED_DATABASE_HOSTS set, a name matching one of its
   `*.example.com` patterns, or a name whose every address lies in one of its
   CIDRs (`*`: anything); without it, production allows public addresses only
   and development anything.

Own addresses are resolved again every OWN_TTL seconds: in a Swarm stack
(`endpoint_mode: dnsrr`) a restarted task comes back with a new address.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import socket
import threading
import time
from urllib.parse import urlparse

import redis
from redis.sentinel import Sentinel

from altus4.config import Settings

log = logging.getLogger("altus4.db")
OWN_TTL = 10.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class HostNotAllowed(Exception):
    pass


def resolve(host: str) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself). :raise HostNotAllowed: no answer."""
    try:
        return sorted({str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, None)})
    except (socket.gaierror, UnicodeError):
        raise HostNotAllowed(f"Host {host!r} does not resolve") from None


def _address(text: str) -> Address:
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _internal(address: Address) -> bool:
    """Loopback, private, link-local (cloud metadata lives at 169.254.169.254), reserved, multicast or unset."""
    return not address.is_global or address.is_multicast


def _quietly(host: str) -> list[str]:
    try:
        return resolve(host)
    except HostNotAllowed:
        return []


def _discovered(settings: Settings) -> set[str]:
    """Redis servers the configuration does not name: Sentinel's master and replicas, a Cluster's other nodes."""
    found: set[str] = set()
    timeout = min(settings.redis_socket_timeout, 1.0)
    try:
        if settings.redis_sentinels:
            sentinel = Sentinel(list(settings.redis_sentinels), socket_timeout=timeout)
            name = settings.redis_sentinel_master
            found.add(sentinel.discover_master(name)[0])
            found.update(host for host, _ in sentinel.discover_slaves(name))
        for host, port in settings.redis_cluster_nodes[:1]:
            nodes = redis.Redis(host=host, port=port, socket_timeout=timeout).cluster("nodes")
            found.update(address.split(":")[0] for address in nodes)
    except (redis.RedisError, OSError) as exc:
        log.info("own Redis servers not discovered this time: %s", exc)
    return found


class _OwnAddresses:
    """The addresses of this service's own servers, resolved at most every OWN_TTL seconds per settings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Settings, tuple[float, frozenset[Address]]] = {}

    def __call__(self, settings: Settings) -> frozenset[Address]:
        now = time.monotonic()
        cached = self._cache.get(settings)
        if cached and cached[0] > now:
            return cached[1]
        own = self._collect(settings)
        with self._lock:
            self._cache[settings] = (now + OWN_TTL, own)
        return own

    @staticmethod
    def _collect(settings: Settings) -> frozenset[Address]:
        hosts = {h for h, _ in settings.db_nodes} | {settings.redis_host, urlparse(settings.redis_url).hostname or ""}
        hosts |= {h for h, _ in (*settings.db_read_hosts, *settings.redis_sentinels, *settings.redis_cluster_nodes)}
        hosts |= _discovered(settings)
        own = {_address(a) for host in hosts if host for a in _quietly(host)}
        this_machine = {_address(a) for a in _quietly(socket.gethostname())}
        if any(a in this_machine or a.is_loopback or a.is_unspecified for a in own):  # a server of ours runs here
            own |= this_machine
        return frozenset(own)


own_addresses = _OwnAddresses()


def _on_this_machine_or_own(address: Address, own: frozenset[Address]) -> bool:
    if address in own:
        return True
    local = any(a.is_loopback or a.is_unspecified for a in own)
    return local and (address.is_loopback or address.is_unspecified)


def _refuse_own(host: str, addresses: list[str], settings: Settings) -> list[str]:
    own = own_addresses(settings)
    for text in addresses:
        if _on_this_machine_or_own(_address(text), own):
            raise HostNotAllowed(
                f"Host {host!r} is one of this service's own servers ({text}); tenants' databases must live"
                " elsewhere (single-user set-ups may set ALLOW_OWN_SERVERS=true)"
            )
    return addresses


def check_host_allowed(host: str, settings: Settings) -> list[str] | None:
    """Whether a tenant may connect to `host`; the addresses to connect to when they were checked (None: by
    name, only where nothing had to be resolved).
    :raise HostNotAllowed: with the reason, fit for the tenant."""
    allowlist = settings.allowed_database_hosts
    lowered = host.lower().strip("[]")
    guarded = not settings.allow_own_servers

    def allowed_as_named() -> list[str] | None:
        return _refuse_own(host, resolve(lowered), settings) if guarded else None

    if "*" in allowlist or (not allowlist and settings.development):
        return allowed_as_named()
    if any(fnmatch.fnmatch(lowered, entry.lower()) for entry in allowlist if "/" not in entry):
        return allowed_as_named()
    if allowlist:
        networks = [ipaddress.ip_network(e, strict=False) for e in allowlist if "/" in e]
        if networks:  # no CIDR listed: nothing to resolve (no DNS query for a name that is refused anyway)
            addresses = resolve(lowered)
            if all(any(ipaddress.ip_address(a) in n for n in networks) for a in addresses):
                return _refuse_own(host, addresses, settings) if guarded else addresses
        raise HostNotAllowed(f"Host {host!r} is not in ALLOWED_DATABASE_HOSTS")
    addresses = resolve(lowered)
    refused = [a for a in addresses if _internal(_address(a))]
    if refused:
        raise HostNotAllowed(
            f"Host {host!r} resolves to an internal address ({refused[0]}); this server connects only to public"
            " addresses unless its operator lists others in ALLOWED_DATABASE_HOSTS"
        )
    return _refuse_own(host, addresses, settings) if guarded else addresses
