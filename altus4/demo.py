"""A small demo database (products and articles with FULLTEXT indexes) and a demo account.

Used by `make run` so a new user has something to search at once. Rebuilding it
is idempotent: the tables are recreated and the demo user's key is replaced,
because a key can only be shown when it is created.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

import pymysql

from altus4.config import Settings
from altus4.db.pool import connect_kwargs

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password-123"
DEMO_DATABASE = "altus4_demo"
DEMO_READER = "altus4_demo_reader"  # the demo connection's account: SELECT on the demo database only


@dataclass(frozen=True)
class DemoServer:
    """Where the demo database is built, as an account there that may create databases and users; by default
    the metadata server with the configured account (a single-user set-up: `make run`)."""

    host: str
    port: int
    user: str | None = None  # None: the metadata account's
    password: str | None = None

    @classmethod
    def metadata(cls, settings: Settings) -> DemoServer:
        return cls(*settings.db_nodes[0])

    def connect(self, settings: Settings) -> pymysql.Connection:
        return pymysql.connect(**connect_kwargs(settings, self.host, self.port, None, self.user, self.password))


_ADJECTIVES = [
    "wireless",
    "ergonomic",
    "compact",
    "waterproof",
    "stainless",
    "portable",
    "smart",
    "organic",
    "heavy-duty",
    "lightweight",
    "vintage",
    "solar",
]
_PRODUCTS = [
    "headphones",
    "keyboard",
    "backpack",
    "kettle",
    "thermostat",
    "camera",
    "lamp",
    "blender",
    "speaker",
    "tent",
    "charger",
    "notebook",
]
_FEATURES = [
    "long battery life",
    "noise cancelling",
    "quick setup",
    "a two-year warranty",
    "recycled materials",
    "a sleek aluminium body",
    "fast charging over USB-C",
    "a quiet motor",
    "easy cleaning",
    "bluetooth pairing",
]
_TOPICS = [
    ("Tuning MySQL full-text search", "mysql fulltext index relevance ranking natural language boolean mode"),
    ("Scaling Python web services", "gunicorn gevent workers connection pools horizontal scaling load balancer"),
    ("Caching strategies with Redis", "redis cache invalidation ttl sentinel cluster latency"),
    ("Designing REST APIs", "rest api pagination error envelope versioning authentication"),
    ("Indexing for fast queries", "database index btree explain query optimization mysql"),
    ("Securing credentials at rest", "encryption aes gcm secrets rotation passwords hashing"),
]


def _products(rng: random.Random, count: int) -> list[tuple]:
    rows = []
    for _ in range(count):
        adjective, product = rng.choice(_ADJECTIVES), rng.choice(_PRODUCTS)
        features = rng.sample(_FEATURES, 2)
        rows.append(
            (
                f"{adjective.title()} {product}",
                f"A {adjective} {product} with {features[0]} and {features[1]}.",
                product,
                round(rng.uniform(5, 500), 2),
            )
        )
    return rows


def _articles(rng: random.Random, count: int) -> list[tuple]:
    rows = []
    for i in range(count):
        title, words = _TOPICS[i % len(_TOPICS)]
        vocabulary = words.split()
        body = " ".join(rng.choice(vocabulary) for _ in range(60))
        rows.append((f"{title} (part {i // len(_TOPICS) + 1})", f"{title}. {body}.", rng.choice(["ana", "li", "sam"])))
    return rows


def build_demo_database(
    settings: Settings,
    database: str = DEMO_DATABASE,
    products: int = 200,
    articles: int = 60,
    seed: int = 4,
    server: DemoServer | None = None,
) -> None:
    rng = random.Random(seed)
    conn = (server or DemoServer.metadata(settings)).connect(settings)
    quoted = "`" + database.replace("`", "``") + "`"
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {quoted} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            cur.execute(f"USE {quoted}")
            cur.execute("DROP TABLE IF EXISTS products, articles")
            cur.execute(
                "CREATE TABLE products (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(255) NOT NULL,"
                " description TEXT NOT NULL, category VARCHAR(64) NOT NULL, price DECIMAL(10,2) NOT NULL,"
                " FULLTEXT KEY ft_products (name, description)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            )
            cur.execute(
                "CREATE TABLE articles (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(255) NOT NULL,"
                " body TEXT NOT NULL, author VARCHAR(64) NOT NULL,"
                " FULLTEXT KEY ft_articles (title, body)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            )
            cur.executemany(
                "INSERT INTO products (name, description, category, price) VALUES (%s, %s, %s, %s)",
                _products(rng, products),
            )
            cur.executemany("INSERT INTO articles (title, body, author) VALUES (%s, %s, %s)", _articles(rng, articles))
            cur.execute("ANALYZE TABLE products, articles")
            cur.fetchall()
    finally:
        conn.close()


def demo_reader(settings: Settings, database: str = DEMO_DATABASE, server: DemoServer | None = None) -> tuple[str, str]:
    """A read-only account for the demo connection, as the console advises tenants to use (a fresh password
    each time: a stored one cannot be read back).
    :raise pymysql.MySQLError: the configured account may not create users or grant."""
    password = secrets.token_urlsafe(24)
    quoted = "`" + database.replace("`", "``") + "`"
    conn = (server or DemoServer.metadata(settings)).connect(settings)
    try:
        with conn.cursor() as cur:
            for host in ("localhost", "127.0.0.1", "%"):
                cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (DEMO_READER, host, password))
                cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (DEMO_READER, host, password))
                cur.execute(f"GRANT SELECT ON {quoted}.* TO %s@%s", (DEMO_READER, host))
    finally:
        conn.close()
    return DEMO_READER, password
