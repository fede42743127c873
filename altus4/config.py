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
from collections.abc import Mapping
from dataclasses import dataclass, field

DEV_JWT_SECRET = "altus4-development-jwt-secret-not-for-production"
DEV_ENCRYPTION_KEY = "altus4-development-encryption-key-not-for-production"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _int(env: Mapping[str, str], name: str, default: int, lo: int = 0, hi: int = 2**31) -> int:
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


def _float(env: Mapping[str, str], name: str, default: float, lo: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < lo:
        raise ConfigError(f"{name} must be at least {lo}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


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


def _hosts(env: Mapping[str, str], name: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` (port required) as tuples."""
    hosts = []
    for item in _list(env, name):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be a list of host:port, got {item!r}")
        hosts.append((host.strip("[]"), int(port)))
    return tuple(hosts)


SECRET_VARIABLES = ("DB_PASSWORD", "DB_READ_PASSWORD", "REDIS_PASSWORD", "JWT_SECRET", "ENCRYPTION_KEY",
                    "OPENAI_API_KEY", "REDIS_URL")


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


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    entries = _list(env, name)
    for entry in entries:
        if entry == "*" or re.fullmatch(r"[A-Za-z0-9*.-]+", entry):
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(f"{name} entries must be hostnames, *.wildcards or CIDRs; got {entry!r}") from None
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
    return default_pool_size(os.cpu_count() or 1, _int(env, "WORKER_CONNECTIONS", 1000, 1), memory_gb)


@dataclass(frozen=True)
class Settings:
    env: str = "production"
    port: int = 3000
    version: str = "1.0.0"
    log_level: str = "INFO"
    # metadata database (the primary; replicas in db_read_hosts)
    db_host: str = "127.0.0.1"
    db_port: int = 3306
    db_username: str = "root"
    db_password: str = field(default="", repr=False)
    db_database: str = "altus4"
    db_read_hosts: tuple[tuple[str, int], ...] = ()
    db_read_username: str = ""
    db_read_password: str | None = field(default=None, repr=False)
    db_replica_max_lag: float = 5.0
    db_replica_check_interval: float = 2.0
    db_pool_size: int = 10
    db_pool_timeout: float = 2.0
    db_connect_timeout: float = 5.0
    # redis
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_password: str = field(default="", repr=False)
    redis_db: int = 0
    redis_socket_timeout: float = 0.5
    redis_url_override: str = field(default="", repr=False)  # REDIS_URL, when a single node is given as a URL
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "altus4-master"
    redis_cluster_nodes: tuple[tuple[str, int], ...] = ()
    # secrets
    jwt_secret: str = field(default=DEV_JWT_SECRET, repr=False)
    jwt_expires_in: int = 86400
    encryption_key: bytes = field(default_factory=lambda: parse_encryption_key(DEV_ENCRYPTION_KEY), repr=False)
    # AI
    openai_api_key: str = field(default="", repr=False)
    openai_model: str = "gpt-4o-mini"
    openai_base_url: str = ""
    openai_embedding_model: str = "text-embedding-3-small"
    ai_timeout_ms: int = 2000
    ai_rate_limit_per_minute: int = 600  # model calls per minute for the whole fleet
    ai_hourly_free: int = 100  # model calls per user per hour, by API-key tier
    ai_hourly_pro: int = 1000
    ai_hourly_enterprise: int = 10000
    ai_queue_wait_ms: int = 200  # how long a burst may wait for the AI budget before falling back
    ai_breaker_failures: int = 5
    ai_breaker_reset: float = 15.0
    semantic_candidates: int = 100  # lexical candidates per table re-ranked in semantic mode
    semantic_rrf_k: int = 60
    semantic_lexical_weight: float = 1.0
    semantic_vector_weight: float = 1.0
    semantic_query_expansion: bool = False  # a chat call per semantic search widens the candidates
    # connected databases
    allowed_database_hosts: tuple[str, ...] = ()
    database_ssl_ca: str = ""
    connection_timeout: float = 5.0
    target_pool_size: int = 5  # connections per connected database, per worker
    target_pools_max: int = 64  # connected databases with an open pool, per worker (LRU beyond)
    # limits
    rate_limit_free: int = 1000
    rate_limit_pro: int = 10000
    rate_limit_enterprise: int = 100000
    auth_rate_limit: str = "10 per minute;100 per hour"
    user_rate_limit: str = "600 per minute"
    max_body_bytes: int = 1_048_576
    trusted_proxies: int = 0  # how many proxies in front set X-Forwarded-For (nginx/HAProxy: 1)
    # search
    search_cache_ttl: int = 300
    write_behind_interval_ms: int = 100  # usage counts and analytics entries wait this long to be batched
    schema_cache_ttl: int = 600
    search_timeout_ms: int = 5000

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
        return cls(
            env="development" if development else "production",
            port=_int(env, "PORT", 3000, 1, 65535),
            log_level=_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
            db_host=env.get("DB_HOST", "").strip() or "127.0.0.1",
            db_port=_int(env, "DB_PORT", 3306, 1, 65535),
            db_username=env.get("DB_USERNAME", "").strip() or "root",
            db_password=env.get("DB_PASSWORD", ""),
            db_database=env.get("DB_DATABASE", "").strip() or "altus4",
            db_read_hosts=_hosts(env, "DB_READ_HOSTS"),
            db_read_username=env.get("DB_READ_USERNAME", "").strip(),
            db_read_password=env["DB_READ_PASSWORD"] if "DB_READ_PASSWORD" in env else None,
            db_replica_max_lag=_float(env, "DB_REPLICA_MAX_LAG", 5.0),
            db_replica_check_interval=_float(env, "DB_REPLICA_CHECK_INTERVAL", 2.0, 0.1),
            db_pool_size=_int(env, "DB_POOL_SIZE", _default_pool_size(env), 1, 1000),
            db_pool_timeout=_float(env, "DB_POOL_TIMEOUT", 2.0),
            db_connect_timeout=_float(env, "DB_CONNECT_TIMEOUT", 5.0, 0.1),
            redis_host=env.get("REDIS_HOST", "").strip() or "127.0.0.1",
            redis_port=_int(env, "REDIS_PORT", 6379, 1, 65535),
            redis_password=env.get("REDIS_PASSWORD", ""),
            redis_db=_int(env, "REDIS_DB", 0, 0, 15),
            redis_socket_timeout=_float(env, "REDIS_SOCKET_TIMEOUT", 0.5, 0.01),
            redis_url_override=_redis_url(env),
            redis_sentinels=_hosts(env, "REDIS_SENTINELS"),
            redis_sentinel_master=env.get("REDIS_SENTINEL_MASTER", "").strip() or "altus4-master",
            redis_cluster_nodes=_hosts(env, "REDIS_CLUSTER_NODES"),
            jwt_secret=jwt_secret,
            jwt_expires_in=_duration(env, "JWT_EXPIRES_IN", 86400),
            encryption_key=parse_encryption_key(raw_key or DEV_ENCRYPTION_KEY),
            openai_api_key=env.get("OPENAI_API_KEY", "").strip(),
            openai_model=env.get("OPENAI_MODEL", "").strip() or "gpt-4o-mini",
            openai_base_url=env.get("OPENAI_BASE_URL", "").strip(),
            openai_embedding_model=env.get("OPENAI_EMBEDDING_MODEL", "").strip() or "text-embedding-3-small",
            ai_timeout_ms=_int(env, "AI_TIMEOUT_MS", 2000, 50, 60_000),
            ai_rate_limit_per_minute=_int(env, "AI_RATE_LIMIT_PER_MINUTE", 600, 1),
            ai_hourly_free=_int(env, "AI_RATE_LIMIT_FREE", 100, 1),
            ai_hourly_pro=_int(env, "AI_RATE_LIMIT_PRO", 1000, 1),
            ai_hourly_enterprise=_int(env, "AI_RATE_LIMIT_ENTERPRISE", 10000, 1),
            ai_queue_wait_ms=_int(env, "AI_QUEUE_WAIT_MS", 200, 0, 10_000),
            ai_breaker_failures=_int(env, "AI_BREAKER_FAILURES", 5, 1, 1000),
            ai_breaker_reset=_float(env, "AI_BREAKER_RESET_SECONDS", 15.0, 0.1),
            semantic_candidates=_int(env, "SEMANTIC_CANDIDATES", 100, 1, 1000),
            semantic_rrf_k=_int(env, "SEMANTIC_RRF_K", 60, 1, 10_000),
            semantic_lexical_weight=_float(env, "SEMANTIC_LEXICAL_WEIGHT", 1.0),
            semantic_vector_weight=_float(env, "SEMANTIC_VECTOR_WEIGHT", 1.0),
            semantic_query_expansion=_bool(env, "SEMANTIC_QUERY_EXPANSION", False),
            allowed_database_hosts=_networks(env, "ALLOWED_DATABASE_HOSTS"),
            database_ssl_ca=env.get("DATABASE_SSL_CA", "").strip(),
            connection_timeout=_float(env, "CONNECTION_TIMEOUT", 5.0, 0.1),
            target_pool_size=_int(env, "TARGET_POOL_SIZE", 5, 1, 500),
            target_pools_max=_int(env, "TARGET_POOLS_MAX", 64, 1, 10_000),
            rate_limit_free=_int(env, "RATE_LIMIT_FREE", 1000, 1),
            rate_limit_pro=_int(env, "RATE_LIMIT_PRO", 10000, 1),
            rate_limit_enterprise=_int(env, "RATE_LIMIT_ENTERPRISE", 100000, 1),
            auth_rate_limit=env.get("AUTH_RATE_LIMIT", "").strip() or "10 per minute;100 per hour",
            user_rate_limit=env.get("USER_RATE_LIMIT", "").strip() or "600 per minute",
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1_048_576, 1024),
            trusted_proxies=_int(env, "TRUSTED_PROXIES", 0, 0, 10),
            search_cache_ttl=_int(env, "SEARCH_CACHE_TTL", 300, 0),
            write_behind_interval_ms=_int(env, "WRITE_BEHIND_INTERVAL_MS", 100, 10, 10_000),
            schema_cache_ttl=_int(env, "SCHEMA_CACHE_TTL", 600, 0),
            search_timeout_ms=_int(env, "SEARCH_TIMEOUT_MS", 5000, 100, 600_000),
        )
