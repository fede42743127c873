"""Fixtures: a real MariaDB/MySQL and Redis, one metadata database and Redis DB for the run.

Each test works as its own freshly registered users, so tests cannot see each
other's rows; tenancy is what the product itself must enforce.
"""

from __future__ import annotations

import os
import uuid

import pymysql
import pytest
import redis

from altus4 import create_app
from altus4.config import Settings
from altus4.db.migrate import Migrator
from altus4.demo import build_demo_database

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
        "CONNECTION_TIMEOUT": "2",
    }
    env.update(overrides)
    return env


def make_settings(**overrides: str) -> Settings:
    return Settings.from_env(env_for_tests(**overrides))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def migrated(settings: Settings) -> Settings:
    Migrator(settings).fresh()
    redis.Redis(host=settings.redis_host, port=settings.redis_port, db=TEST_REDIS_DB).flushdb()
    return settings


@pytest.fixture(scope="session")
def targets(settings: Settings) -> dict[str, str]:
    """Two connected-database fixtures with known FULLTEXT data."""
    build_demo_database(settings, TARGET_A, products=120, articles=30, seed=1)
    build_demo_database(settings, TARGET_B, products=80, articles=18, seed=2)
    conn = pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_username,
                           password=settings.db_password, autocommit=True)
    with conn.cursor() as cur:
        for host in ("localhost", "127.0.0.1", "%"):
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (READER[0], host, READER[1]))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (READER[0], host, READER[1]))
            for database in (TARGET_A, TARGET_B):
                cur.execute(f"GRANT SELECT ON `{database}`.* TO %s@%s", (READER[0], host))
    conn.close()
    return {"a": TARGET_A, "b": TARGET_B}


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
    conn = pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_username,
                           password=settings.db_password, database=TEST_DB, autocommit=True,
                           cursorclass=pymysql.cursors.DictCursor)
    yield conn
    conn.close()


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

    def connect_database(self, settings: Settings, database: str, **body) -> dict:
        payload = {"name": database, "host": settings.db_host, "port": settings.db_port, "database": database,
                   "username": READER[0], "password": READER[1], **body}
        r = self.call("POST", "/api/v1/databases", json=payload)
        assert r.status_code == 201, r.get_json()
        return r.get_json()["data"]


@pytest.fixture
def make_user(client):
    def make(password: str = "correct horse battery") -> User:
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        r = client.post("/api/v1/auth/register", json={"email": email, "password": password, "name": "Test User"})
        assert r.status_code == 201, r.get_json()
        return User(client, email, password, r.get_json())

    return make


@pytest.fixture
def user(make_user) -> User:
    return make_user()
