"""Fixtures: a real MariaDB/MySQL and Redis, one metadata database and Redis DB for the run.

Each test works as its own freshly registered users, so tests cannot see each
other's rows; tenancy is what the product itself must enforce.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pymysql
import pytest
import redis

from altus4 import create_app
from altus4.config import Settings
from altus4.db.migrate import Migrator
from altus4.demo import build_demo_database

ROOT_DIR = Path(__file__).resolve().parent.parent
TEST_DB = os.environ.get("ALTUS4_TEST_DATABASE", "altus4_test")
TEST_REDIS_DB = int(os.environ.get("ALTUS4_TEST_REDIS_DB", "13"))
TARGET_A = "altus4_test_target_a"
TARGET_B = "altus4_test_target_b"
READER = ("altus4_reader", "reader-Secret-42")  # a read-only account, as users are told to create


def env_for_tests(**overrides: str) -> dict[str, str]:
    env = {
        "APP_ENV": "development",
        "DB_HOST": os.environ.get("DB_HOST", "127.0.0.1"),
        "DB_PORT": os.environ.get("DB_PORT", "3306"),
        "DB_USERNAME": os.environ.get("DB_USERNAME", "root"),
        "DB_PASSWORD": os.environ.get("DB_PASSWORD", ""),
        "DB_DATABASE": TEST_DB,
        "REDIS_HOST": os.environ.get("REDIS_HOST", "127.0.0.1"),
        "REDIS_PORT": os.environ.get("REDIS_PORT", "6379"),
        "REDIS_DB": str(TEST_REDIS_DB),
        "AUTH_RATE_LIMIT": "100000 per minute",
        "USER_RATE_LIMIT": "100000 per minute",
        "CONNECTION_TEST_RATE_LIMIT": "100000 per minute",
        "TARGET_POOLS_MAX": "16",  # each test connects new "tenant" databases: pools beyond these are closed
        "CONNECTION_TIMEOUT": "2",
        # the tests' "tenant" databases live on the metadata server itself (a single-user set-up)
        "ALLOW_OWN_SERVERS": "true",
        "DEFAULT_ACCOUNT_TIER": "enterprise",  # keys of any tier (tests/test_security_pass2.py: tiers capped)
        # a search that cannot work a new term's frequency out waits for its count (tests assert exact rankings)
        "BM25_DF_WAIT_MS": "20000",
    }
    env.update(overrides)
    return env


def connect_admin(settings: Settings, database: str | None = None, dict_rows: bool = False) -> pymysql.Connection:
    """A direct connection with the test account, for arranging data and checking what landed."""
    extra = {"cursorclass": pymysql.cursors.DictCursor} if dict_rows else {}
    return pymysql.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_username,
        password=settings.db_password,
        database=database,
        autocommit=True,
        **extra,
    )


def fresh_fulltext_table(settings: Settings, database: str, table: str, ddl: str, insert: str, rows: list) -> None:
    """(Re)create `database`.`table` from `ddl` and fill it; readable by the READER account."""
    conn = connect_admin(settings)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        cur.execute(f"USE `{database}`")
        cur.execute(f"DROP TABLE IF EXISTS `{table}`")
        cur.execute(ddl)
        cur.executemany(insert, rows)
        for host in ("localhost", "127.0.0.1", "%"):
            cur.execute(f"GRANT SELECT ON `{database}`.* TO %s@%s", (READER[0], host))
    conn.close()


def away_from_window_edge(window: int, margin: float = 10.0) -> None:
    """Rate limits count in fixed windows aligned to the clock; a burst that straddled an edge would be
    split between two windows, so tests that count to a limit start well inside one."""
    left = window - time.time() % window
    if left < margin:
        time.sleep(left + 0.05)


def make_settings(**overrides: str) -> Settings:
    return Settings.from_env(env_for_tests(**overrides))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> Settings:
    conn = connect_admin(settings)
    with conn.cursor() as cur:  # every test "tenant" database lives on this one server, with every app's pools
        cur.execute("SET GLOBAL max_connections = GREATEST(@@max_connections, 600)")
    conn.close()
    Migrator(settings).fresh()
    redis.Redis(host=settings.redis_host, port=settings.redis_port, db=TEST_REDIS_DB).flushdb()
    return settings


@pytest.fixture(scope="session")
def targets(settings: Settings) -> dict[str, str]:
    """Two connected-database fixtures with known FULLTEXT data."""
    build_demo_database(settings, TARGET_A, products=120, articles=30, seed=1)
    build_demo_database(settings, TARGET_B, products=80, articles=18, seed=2)
    conn = connect_admin(settings)
    with conn.cursor() as cur:
        for host in ("localhost", "127.0.0.1", "%"):
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (READER[0], host, READER[1]))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (READER[0], host, READER[1]))
            for database in (TARGET_A, TARGET_B):
                cur.execute(f"GRANT SELECT ON `{database}`.* TO %s@%s", (READER[0], host))
    _known_tables(conn)
    conn.close()
    return {"a": TARGET_A, "b": TARGET_B}


# Rows whose matches the search tests assert exactly. Filler rows give InnoDB's IDF something to weigh against.
KB_A = [
    (1, "MySQL full text search", "Boolean mode and natural language mode explained with examples"),
    (2, "Redis caching patterns", "Cache invalidation with expiry while MySQL stays the source of truth"),
    (3, "Scaling gunicorn workers", "Gevent workers share connection pools across many greenlets"),
    (4, "Slow queries in MySQL", "Use EXPLAIN to find slow queries and missing indexes"),
    (5, "Optimizing indexes", "Optimization of composite indexes for range scans"),
]
KB_B = [
    (1, "Elasticsearch migration stories", "Teams that moved search back into MySQL full text indexes"),
    (2, "Connection pooling", "Pools keep connections warm for gevent workers"),
    (3, "Redis sentinel failover", "Sentinels promote a replica when the primary fails"),
]
PLAIN = [(1, "remember the quarterly gunicorn report"), (2, "nothing to see here"), (3, "gunicorn tuning notes")]


def _filler(start: int, count: int) -> list[tuple]:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    return [
        (start + i, f"Filler {words[i % 10]} {words[(i * 3) % 10]}", f"Unrelated note number {i} about {words[i % 7]}")
        for i in range(count)
    ]


def _known_tables(conn, only: str | None = None) -> None:
    with conn.cursor() as cur:
        for database, rows in ((TARGET_A, KB_A), (TARGET_B, KB_B)):
            if only and database != only:
                continue
            cur.execute(f"USE `{database}`")
            cur.execute("DROP TABLE IF EXISTS kb, plain")
            cur.execute(
                "CREATE TABLE kb (id INT PRIMARY KEY, title VARCHAR(200) NOT NULL, body TEXT NOT NULL,"
                " FULLTEXT KEY ft_kb (title, body)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            )
            cur.executemany("INSERT INTO kb VALUES (%s, %s, %s)", rows + _filler(100, 40))
        if only and only != TARGET_A:
            return
        cur.execute(f"USE `{TARGET_A}`")
        cur.execute("CREATE TABLE plain (id INT PRIMARY KEY, note TEXT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
        cur.executemany("INSERT INTO plain VALUES (%s, %s)", PLAIN)


@pytest.fixture(scope="session")
def app(migrated: Settings):
    application = create_app(migrated)
    yield application
    application.extensions["altus4"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(settings: Settings):
    conn = connect_admin(settings, TEST_DB, dict_rows=True)
    yield conn
    conn.close()


def connection_body(settings: Settings, database: str, **extra) -> dict:
    """POST /databases for `database` on the test server, through the read-only account."""
    return {
        "name": database,
        "host": settings.db_host,
        "port": settings.db_port,
        "database": database,
        "username": READER[0],
        "password": READER[1],
        **extra,
    }


class User:
    def __init__(self, client, email: str, password: str, body: dict):
        self.client = client
        self.email = email
        self.password = password
        self.id = body["data"]["user"]["id"]
        self.token = body["data"]["token"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, **kwargs):
        return self.client.open(path, method=method, headers=self.headers, **kwargs)

    def create_key(self, **body) -> tuple[str, dict]:
        payload = {"name": "test key", "environment": "test", "permissions": ["search", "analytics"], **body}
        r = self.call("POST", "/api/v1/keys", json=payload)
        assert r.status_code == 201, r.get_json()
        return r.get_json()["data"]["secretKey"], r.get_json()["data"]["apiKey"]

    def key_headers(self, **body) -> dict[str, str]:
        """Authorization headers with a new API key of this user's."""
        secret, _ = self.create_key(**body)
        return {"Authorization": f"Bearer {secret}"}

    def connect_database(self, settings: Settings, database: str, **body) -> dict:
        r = self.call("POST", "/api/v1/databases", json=connection_body(settings, database, **body))
        assert r.status_code == 201, r.get_json()
        return r.get_json()["data"]


def register(client, password: str = "correct horse battery") -> User:
    """A new account through the API, on any app's test client."""
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    r = client.post("/api/v1/auth/register", json={"email": email, "password": password, "name": "Test User"})
    assert r.status_code == 201, r.get_json()
    return User(client, email, password, r.get_json())


@pytest.fixture
def make_user(client):
    return lambda password="correct horse battery": register(client, password)


@pytest.fixture
def user(make_user) -> User:
    return make_user()


class QueryRecorder:
    """Every statement this process sends to MySQL while recording (warehouse's query counter, by another name)."""

    WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")

    def __init__(self) -> None:
        self.statements: list[str] = []

    def writes(self, table: str | None = None) -> list[str]:
        found = [s for s in self.statements if s.lstrip().split(None, 1)[0].upper() in self.WRITES]
        return [s for s in found if table is None or f" {table} " in f" {s} " or f" {table}(" in s]


@pytest.fixture
def queries(monkeypatch) -> QueryRecorder:
    """Counts statements at PyMySQL's lowest level (one per round trip; an executemany batch is one)."""
    recorder = QueryRecorder()
    original = pymysql.cursors.Cursor._query

    def recording(cursor, sql):
        recorder.statements.append(sql if isinstance(sql, str) else sql.decode("utf-8", "replace"))
        return original(cursor, sql)

    monkeypatch.setattr(pymysql.cursors.Cursor, "_query", recording)
    return recorder
