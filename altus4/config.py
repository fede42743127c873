"""All configuration, parsed once from the environment.

Every setting is read here and nowhere else. Coercers reject bad values with a
`ConfigError` naming the variable, so a misconfigured worker dies at start
instead of failing on the first request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

VERSION = "1.0.0"  # this build of the service (envelope `meta.version`, the OpenAPI document)
DEV_JWT_SECRET = "altus4-development-jwt-secret-not-for-production"
DEV_ENCRYPTION_KEY = "altus4-development-encryption-key-not-for-production"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_LEVELS = ("debug", "info", "warning", "error")


def read_int(env: Mapping[str, str], name: str, default: int, lo: int = 0, hi: int = 2**31) -> int:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def read_float(env: Mapping[str, str], name: str, default: float, lo: float = 0.0, hi: float = float("inf")) -> float:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def read_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def read_exact(env: Mapping[str, str], name: str, default: Any) -> Any:
    """The value as given, spaces included (passwords); unset means the default."""
    return env.get(name, default)


def read_str(env: Mapping[str, str], name: str, default: str) -> str:
    """A string; empty or unset means the default."""
    return env.get(name, "").strip() or default


def _duration(env: Mapping[str, str], name: str, default: int) -> int:
    """Seconds, from `3600`, `60m`, `24h` or `7d` (the forms the Node service took)."""
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    match = _DURATION.match(raw)
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{name} must be a positive duration like 3600, 60m, 24h or 7d, got {raw!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _hosts(env: Mapping[str, str], name: str, default: tuple = ()) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` (port required) as tuples."""
    hosts = []
    for item in _list(env, name):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be a list of host:port, got {item!r}")
        hosts.append((host.strip("[]"), int(port)))
    return tuple(hosts) or default


def metadata_nodes(raw: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """DB_HOST: one host, or a Galera cluster's nodes as `host[:port],...` in order of preference (a port
    left out is DB_PORT; an IPv6 address with a port is written `[addr]:port`)."""
    nodes = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            raise ConfigError(f"DB_HOST must be a host or a list host[:port],..., got {raw!r}")
        host, port = item, default_port
        if item.startswith("["):  # [v6]:port or [v6]
            host, _, rest = item[1:].partition("]")
            if rest:
                port = _port("DB_HOST", rest.removeprefix(":"), item)
        elif item.count(":") == 1:
            host, rest = item.split(":")
            port = _port("DB_HOST", rest, item)
        if not host:
            raise ConfigError(f"DB_HOST has an empty host in {item!r}")
        nodes.append((host, port))
    return tuple(nodes)


def _port(name: str, raw: str, item: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name} has an invalid port in {item!r}")
    return int(raw)


_LIMIT_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(r"^\s*(\d+)\s*(?:per|/)\s*(second|minute|hour|day)s?\s*$", re.I)


@dataclass(frozen=True)
class Limit:
    """One rate-limit window: `amount` requests per `window` seconds."""

    amount: int
    window: int

    def __str__(self) -> str:
        unit = next(name for name, secs in _LIMIT_UNITS.items() if secs == self.window)
        return f"{self.amount} per {unit}"


def parse_limits(text: str, name: str = "rate limit") -> tuple[Limit, ...]:
    """`"10 per minute;100 per hour"` → limits; raises ConfigError (naming `name`) on anything else."""
    limits = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        match = _LIMIT.match(part)
        if not match or int(match.group(1)) < 1:
            raise ConfigError(f"{name}: bad rate limit {part!r}: use forms like '10 per minute;100 per hour'")
        limits.append(Limit(int(match.group(1)), _LIMIT_UNITS[match.group(2).lower()]))
    if not limits:
        raise ConfigError(f"{name}: a rate limit needs at least one 'N per unit'")
    return tuple(limits)


def _limits(env: Mapping[str, str], name: str, default: tuple[Limit, ...]) -> tuple[Limit, ...]:
    raw = env.get(name, "").strip()
    return parse_limits(raw, name) if raw else default


SECRET_VARIABLES = (
    "METRICS_TOKEN",
    "DB_PASSWORD",
    "DB_READ_PASSWORD",
    "REDIS_PASSWORD",
    "JWT_SECRET",
    "ENCRYPTION_KEY",
    "OPENAI_API_KEY",
    "REDIS_URL",
)


def _with_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """`NAME_FILE=/run/secrets/x` supplies NAME from a file (Docker/Kubernetes secrets), never both."""
    merged = dict(env)
    for name in SECRET_VARIABLES:
        path = env.get(f"{name}_FILE", "").strip()
        if not path:
            continue
        if env.get(name):
            raise ConfigError(f"set {name} or {name}_FILE, not both")
        try:
            with open(path, encoding="utf-8") as handle:
                merged[name] = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return merged


def _redis_url(env: Mapping[str, str]) -> str:
    url = env.get("REDIS_URL", "").strip()
    if url and not re.match(r"^rediss?://", url):
        raise ConfigError(f"REDIS_URL must start with redis:// or rediss://, got {url.split(':')[0]!r}")
    return url


def _redis_prefix(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip()
    if raw and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", raw):
        raise ConfigError(f"{name} may hold only letters, digits and _ . : - (at most 64), got {raw!r}")
    return raw or default


def parse_encryption_key(raw: str, name: str = "ENCRYPTION_KEY") -> bytes:
    """A 256-bit AES key from 64 hex digits, base64 of 32 bytes, or a passphrase of 32+ characters.

    A passphrase is stretched with SHA-256 so existing deployments, whose key was
    a 32-character string, keep working.
    """
    raw = raw.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", raw):
        return bytes.fromhex(raw)
    try:
        decoded = base64.b64decode(raw, validate=True)
        if len(decoded) == 32:
            return decoded
    except (binascii.Error, ValueError):
        pass
    if len(raw) >= 32:
        return hashlib.sha256(raw.encode()).digest()
    raise ConfigError(f"{name} must be 64 hex digits, base64 of 32 bytes, or at least 32 characters")


def _networks(env: Mapping[str, str], name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    entries = _list(env, name)
    for entry in entries:
        if entry == "*" or re.fullmatch(r"[A-Za-z0-9*.-]+", entry):
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"{name} entries must be hostnames, *.wildcards or CIDRs; got {entry!r}") from None
    return entries


def _cidrs(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    entries = _list(env, name)
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"{name} entries must be CIDRs or addresses, got {entry!r}") from None
    return entries


def default_pool_size(cpus: int, worker_connections: int, memory_gb: float) -> int:
    """Metadata connections per worker: enough to keep the cores busy, never more than the greenlets that
    could use them, fewer on small machines (each also holds a thread and buffers on the MySQL server)."""
    by_cpu = 2 * cpus + 4
    by_memory = max(4, int(memory_gb * 4))
    return max(2, min(32, by_cpu, by_memory, worker_connections))


def _default_pool_size(env: Mapping[str, str]) -> int:
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory_gb = 4.0
    return default_pool_size(os.cpu_count() or 1, read_int(env, "WORKER_CONNECTIONS", 1000, 1), memory_gb)


def _setting(var: str, default: Any, read: Callable[..., Any] = read_str, *args: Any, secret: bool = False) -> Any:
    """A field read from `var` by `read(env, var, default, *args)`: the name, default and bounds in one place."""
    return field(default=default, repr=not secret, metadata={"var": var, "read": read, "args": args})


@dataclass(frozen=True)
class Settings:
    """Every setting, its variable, default and bounds; `from_env` reads them all at start."""

    env: str = "production"  # APP_ENV (or NODE_ENV): read in from_env with the secrets it governs
    log_level: str = _setting("LOG_LEVEL", "INFO", lambda e, n, d: _choice(e, n, d.lower(), _LEVELS).upper())
    # metadata database (the primary; replicas in db_read_hosts)
    db_host: str = _setting("DB_HOST", "127.0.0.1")
    db_port: int = _setting("DB_PORT", 3306, read_int, 1, 65535)
    db_username: str = _setting("DB_USERNAME", "root")
    db_password: str = _setting("DB_PASSWORD", "", read_exact, secret=True)
    db_database: str = _setting("DB_DATABASE", "altus4")
    db_read_hosts: tuple[tuple[str, int], ...] = _setting("DB_READ_HOSTS", (), _hosts)
    db_read_username: str = _setting("DB_READ_USERNAME", "")
    db_read_password: str | None = _setting("DB_READ_PASSWORD", None, read_exact, secret=True)
    db_replica_max_lag: float = _setting("DB_REPLICA_MAX_LAG", 5.0, read_float)
    db_replica_check_interval: float = _setting("DB_REPLICA_CHECK_INTERVAL", 2.0, read_float, 0.1)
    db_pool_size: int = 10  # DB_POOL_SIZE: its default depends on the machine, see from_env
    db_pool_timeout: float = _setting("DB_POOL_TIMEOUT", 2.0, read_float)
    db_connect_timeout: float = _setting("DB_CONNECT_TIMEOUT", 5.0, read_float, 0.1)
    # a metadata server that refused a connection is answered at once as unavailable for this long
    db_retry_seconds: float = _setting("DB_RETRY_SECONDS", 1.0, read_float, 0.0, 60.0)
    # a Galera list: how long a request waits for a node to take over (the cluster stalls ~6 s on a death)
    db_failover_wait: float = _setting("DB_FAILOVER_WAIT", 10.0, read_float, 0.0, 60.0)
    # redis
    redis_host: str = _setting("REDIS_HOST", "127.0.0.1")
    redis_port: int = _setting("REDIS_PORT", 6379, read_int, 1, 65535)
    redis_password: str = _setting("REDIS_PASSWORD", "", read_exact, secret=True)
    redis_db: int = _setting("REDIS_DB", 0, read_int, 0, 15)
    redis_socket_timeout: float = _setting("REDIS_SOCKET_TIMEOUT", 0.5, read_float, 0.01)
    # REDIS_URL, when a single node is given as a URL
    redis_url_override: str = _setting("REDIS_URL", "", lambda e, n, d: _redis_url(e), secret=True)
    redis_sentinels: tuple[tuple[str, int], ...] = _setting("REDIS_SENTINELS", (), _hosts)
    redis_sentinel_master: str = _setting("REDIS_SENTINEL_MASTER", "altus4-master")
    redis_cluster_nodes: tuple[tuple[str, int], ...] = _setting("REDIS_CLUSTER_NODES", (), _hosts)
    # put before every key: deployments sharing one Redis database (or a Cluster) keep apart
    redis_prefix: str = _setting("REDIS_PREFIX", "", _redis_prefix)
    # secrets (required outside development: see from_env)
    jwt_secret: str = field(default=DEV_JWT_SECRET, repr=False)
    jwt_expires_in: int = _setting("JWT_EXPIRES_IN", 86400, _duration)
    # how long a token replaced by /auth/refresh keeps working, for requests already sent with it
    jwt_refresh_grace: int = _setting("JWT_REFRESH_GRACE", 30, read_int, 0, 300)
    encryption_key: bytes = field(default_factory=lambda: parse_encryption_key(DEV_ENCRYPTION_KEY), repr=False)
    # AI
    openai_api_key: str = _setting("OPENAI_API_KEY", "", secret=True)
    openai_model: str = _setting("OPENAI_MODEL", "gpt-4o-mini")
    openai_base_url: str = _setting("OPENAI_BASE_URL", "")
    openai_embedding_model: str = _setting("OPENAI_EMBEDDING_MODEL", "text-embedding-3-small")
    ai_timeout_ms: int = _setting("AI_TIMEOUT_MS", 2000, read_int, 50, 60_000)
    # model calls per minute for the whole fleet
    ai_rate_limit_per_minute: int = _setting("AI_RATE_LIMIT_PER_MINUTE", 600, read_int, 1)
    # model calls per user per hour, by API-key tier
    ai_hourly_free: int = _setting("AI_RATE_LIMIT_FREE", 100, read_int, 1)
    ai_hourly_pro: int = _setting("AI_RATE_LIMIT_PRO", 1000, read_int, 1)
    ai_hourly_enterprise: int = _setting("AI_RATE_LIMIT_ENTERPRISE", 10000, read_int, 1)
    # how long a burst may wait for the AI budget before falling back
    ai_queue_wait_ms: int = _setting("AI_QUEUE_WAIT_MS", 200, read_int, 0, 10_000)
    ai_breaker_failures: int = _setting("AI_BREAKER_FAILURES", 5, read_int, 1, 1000)
    ai_breaker_reset: float = _setting("AI_BREAKER_RESET_SECONDS", 15.0, read_float, 0.1)
    # lexical candidates per table re-ranked in semantic mode
    semantic_candidates: int = _setting("SEMANTIC_CANDIDATES", 100, read_int, 1, 1000)
    # BM25 re-ranking (altus4.search.bm25): each table's top BM25_WINDOW matches by MySQL's order are re-scored
    bm25_window: int = _setting("BM25_WINDOW", 50, read_int, 1, 1000)
    bm25_k1: float = _setting("BM25_K1", 0.9, read_float, 0.0, 10.0)
    bm25_b: float = _setting("BM25_B", 0.4, read_float, 0.0, 1.0)
    bm25_df_cap: int = _setting("BM25_DF_CAP", 50_000, read_int, 100)
    bm25_stats_ttl: int = _setting("BM25_STATS_TTL", 3600, read_int, 10)
    # how long a search waits for a new term's document-frequency count (in the background) before estimating it
    bm25_df_wait_ms: int = _setting("BM25_DF_WAIT_MS", 50, read_int, 0, 60_000)
    semantic_rrf_k: int = _setting("SEMANTIC_RRF_K", 60, read_int, 1, 10_000)
    semantic_lexical_weight: float = _setting("SEMANTIC_LEXICAL_WEIGHT", 2.0, read_float)
    semantic_vector_weight: float = _setting("SEMANTIC_VECTOR_WEIGHT", 1.0, read_float)
    # how semantic mode fuses the lexical and vector orders: convex (alpha x the BM25 score + (1 - alpha) x the
    # cosine, each scaled to [0, 1] over the candidates) or rrf (ranks); chosen on SciFact's dev split (README)
    semantic_fusion: str = _setting("SEMANTIC_FUSION", "convex", lambda e, n, d: _choice(e, n, d, ("rrf", "convex")))
    semantic_alpha: float = _setting("SEMANTIC_ALPHA", 0.4, read_float, 0.0, 1.0)
    # where a node keeps its vector indexes (one file per indexed table, memory-mapped by its workers)
    vector_index_dir: str = _setting("VECTOR_INDEX_DIR", os.path.join(tempfile.gettempdir(), "altus4-vectors"))
    # tables with at most this many indexed rows are searched exactly, from each worker's memory
    vector_exact_max_rows: int = _setting("VECTOR_EXACT_MAX_ROWS", 20_000, read_int, 0)
    # the follower (`altus4 index --follow`): seconds between passes, deletion checks, full reconciliations
    follow_interval: float = _setting("FOLLOW_INTERVAL", 5.0, read_float, 0.05)
    follow_deletions_every: float = _setting("FOLLOW_DELETIONS_EVERY", 30.0, read_float, 0.0)
    follow_reconcile_every: float = _setting("FOLLOW_RECONCILE_EVERY", 3600.0, read_float, 0.0)
    follow_metrics_port: int = _setting("FOLLOW_METRICS_PORT", 9465, read_int, 0, 65535)
    follow_metrics_host: str = _setting("FOLLOW_METRICS_HOST", "127.0.0.1")
    # a chat call per semantic search widens the candidates
    semantic_query_expansion: bool = _setting("SEMANTIC_QUERY_EXPANSION", False, read_bool)
    # connected databases
    allowed_database_hosts: tuple[str, ...] = _setting("ALLOWED_DATABASE_HOSTS", (), _networks)
    # tenants may connect to this service's own servers and machine: single-user set-ups only (make run's demo)
    allow_own_servers: bool = _setting("ALLOW_OWN_SERVERS", False, read_bool)
    database_ssl_ca: str = _setting("DATABASE_SSL_CA", "")
    connection_timeout: float = _setting("CONNECTION_TIMEOUT", 5.0, read_float, 0.1)
    # a connected database (or its replica) that failed is answered at once with its error for this long
    target_retry_seconds: float = _setting("TARGET_RETRY_SECONDS", 5.0, read_float, 0.0, 3600.0)
    # connections per connected database, per worker
    target_pool_size: int = _setting("TARGET_POOL_SIZE", 5, read_int, 1, 500)
    # connected databases with an open pool, per worker (LRU beyond)
    target_pools_max: int = _setting("TARGET_POOLS_MAX", 64, read_int, 1, 10_000)
    # limits
    rate_limit_free: int = _setting("RATE_LIMIT_FREE", 1000, read_int, 1)
    rate_limit_pro: int = _setting("RATE_LIMIT_PRO", 10000, read_int, 1)
    rate_limit_enterprise: int = _setting("RATE_LIMIT_ENTERPRISE", 100000, read_int, 1)
    # the tier a new account gets (an admin changes it: `altus4 user:tier`); its keys' tiers are capped by it
    default_account_tier: str = _setting(
        "DEFAULT_ACCOUNT_TIER", "free", lambda e, n, d: _choice(e, n, d, ("free", "pro", "enterprise"))
    )
    auth_rate_limit: tuple[Limit, ...] = _setting("AUTH_RATE_LIMIT", (Limit(10, 60), Limit(100, 3600)), _limits)
    user_rate_limit: tuple[Limit, ...] = _setting("USER_RATE_LIMIT", (Limit(600, 60),), _limits)
    # per account, on saving and testing connections (each connects to a host the user names)
    connection_test_rate_limit: tuple[Limit, ...] = _setting(
        "CONNECTION_TEST_RATE_LIMIT", (Limit(20, 60), Limit(200, 3600)), _limits
    )
    # wrong passwords an account may have before each further try waits (doubling, at most the backoff)
    password_free_attempts: int = _setting("PASSWORD_FREE_ATTEMPTS", 5, read_int, 1, 1000)
    password_max_backoff: int = _setting("PASSWORD_MAX_BACKOFF", 900, read_int, 1, 86400)
    max_body_bytes: int = _setting("MAX_BODY_BYTES", 1_048_576, read_int, 1024)
    # who may read /metrics: these networks (by the client address, after TRUSTED_PROXIES), or this bearer token
    metrics_allowed: tuple[str, ...] = _setting(
        "METRICS_ALLOWED",
        ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
        lambda e, n, d: _cidrs(e, n) or d,
    )
    metrics_token: str = _setting("METRICS_TOKEN", "", read_exact, secret=True)
    # how many proxies in front set X-Forwarded-For (nginx/HAProxy: 1)
    trusted_proxies: int = _setting("TRUSTED_PROXIES", 0, read_int, 0, 10)
    # search
    search_cache_ttl: int = _setting("SEARCH_CACHE_TTL", 300, read_int, 0)
    # usage counts and analytics entries wait this long to be batched
    write_behind_interval_ms: int = _setting("WRITE_BEHIND_INTERVAL_MS", 100, read_int, 10, 10_000)
    schema_cache_ttl: int = _setting("SCHEMA_CACHE_TTL", 600, read_int, 0)
    search_timeout_ms: int = _setting("SEARCH_TIMEOUT_MS", 5000, read_int, 100, 600_000)

    @property
    def db_nodes(self) -> tuple[tuple[str, int], ...]:
        """The metadata servers: DB_HOST's one host, or its Galera nodes in order of preference."""
        return metadata_nodes(self.db_host, self.db_port)

    @property
    def development(self) -> bool:
        return self.env == "development"

    @property
    def redis_url(self) -> str:
        if self.redis_url_override:
            return self.redis_url_override
        auth = f":{self.redis_password}@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = _with_secret_files(os.environ if env is None else env)
        modes = ("development", "production")
        development = _choice(env, "APP_ENV", env.get("NODE_ENV", "").strip() or "production", modes) == "development"
        jwt_secret = env.get("JWT_SECRET", "").strip()
        raw_key = env.get("ENCRYPTION_KEY", "").strip()
        if not development:
            if not jwt_secret:
                raise ConfigError("JWT_SECRET is required outside development (APP_ENV=development has a default)")
            if not raw_key:
                raise ConfigError("ENCRYPTION_KEY is required outside development (APP_ENV=development has a default)")
        jwt_secret = jwt_secret or DEV_JWT_SECRET
        if len(jwt_secret) < 32:
            raise ConfigError("JWT_SECRET must be at least 32 characters")
        values = {
            f.name: f.metadata["read"](env, f.metadata["var"], f.default, *f.metadata["args"])
            for f in fields(cls)
            if "var" in f.metadata
        }
        metadata_nodes(values["db_host"], values["db_port"])  # a bad list stops the worker here
        return cls(
            env="development" if development else "production",
            jwt_secret=jwt_secret,
            encryption_key=parse_encryption_key(raw_key or DEV_ENCRYPTION_KEY),
            db_pool_size=read_int(env, "DB_POOL_SIZE", _default_pool_size(env), 1, 1000),
            **values,
        )
