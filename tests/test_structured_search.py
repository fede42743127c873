"""Structured search (issue #27): filter, facets, sort and browse, checked against what MySQL itself says
about the same rows."""

from __future__ import annotations

import datetime as dt
import decimal
import random

import pytest
from conftest import READER, connect_admin, register

SHOP_A, SHOP_B = "altus4_test_shop_a", "altus4_test_shop_b"
CATEGORIES = ["audio", "video", "garden", "kitchen", "books"]
STATUSES = ["open", "pending", "closed"]
WORDS = ["wireless", "headphones", "speaker", "kettle", "lamp", "garden", "hose", "novel", "camera", "cable"]


def _products(seed: int, count: int) -> list[tuple]:
    rng = random.Random(seed)
    rows = []
    for i in range(1, count + 1):
        words = rng.sample(WORDS, 3)
        rows.append(
            (
                i,
                " ".join(words).title(),
                f"A {' '.join(words)} for every home, item {i}",
                rng.choice(CATEGORIES) if i % 17 else None,
                decimal.Decimal(rng.randint(100, 50000)) / 100,
                rng.random() < 0.7,
                dt.datetime(2026, 1, 1) + dt.timedelta(hours=rng.randint(0, 24 * 300)),
                rng.choice(STATUSES),
                rng.randint(1, 4),
            )
        )
    return rows


def _build(settings, database: str, seed: int, count: int) -> list[tuple]:
    conn = connect_admin(settings)
    rows = _products(seed, count)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        cur.execute(f"USE `{database}`")
        cur.execute("DROP TABLE IF EXISTS products, articles, tickets")
        cur.execute(
            "CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(200) NOT NULL, description TEXT NOT NULL,"
            " category VARCHAR(32) NULL, price DECIMAL(10,2) NOT NULL, in_stock TINYINT(1) NOT NULL,"
            " created_at DATETIME NOT NULL, status ENUM('open','pending','closed') NOT NULL, tenant_id INT NOT NULL,"
            " KEY ix_category (category), KEY ix_created (created_at),"
            " FULLTEXT KEY ft_products (name, description)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        cur.executemany("INSERT INTO products VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
        cur.execute(
            "CREATE TABLE articles (id INT PRIMARY KEY, title VARCHAR(200) NOT NULL, body TEXT NOT NULL,"
            " category VARCHAR(32) NULL, tenant_id INT NOT NULL, FULLTEXT KEY ft_articles (title, body))"
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        cur.executemany(
            "INSERT INTO articles VALUES (%s, %s, %s, %s, %s)",
            [
                (
                    i,
                    f"About {WORDS[i % 10]}",
                    f"Notes on {WORDS[i % 10]} and {WORDS[(i * 3) % 10]}",
                    CATEGORIES[i % 5],
                    i % 4 + 1,
                )
                for i in range(1, 41)
            ],
        )
        cur.execute(  # no FULLTEXT index: only browse reaches it
            "CREATE TABLE tickets (id INT PRIMARY KEY, subject VARCHAR(200) NOT NULL, status VARCHAR(16) NOT NULL,"
            " opened DATE NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        cur.executemany(
            "INSERT INTO tickets VALUES (%s, %s, %s, %s)",
            [
                (i, f"ticket {i}", STATUSES[i % 3], dt.date(2026, 11, 1) + dt.timedelta(days=i % 30))
                for i in range(1, 61)
            ],
        )
        for host in ("localhost", "127.0.0.1", "%"):
            cur.execute(f"GRANT SELECT ON `{database}`.* TO %s@%s", (READER[0], host))
    conn.close()
    return rows


@pytest.fixture(scope="module")
def shop(settings, targets):
    return {SHOP_A: _build(settings, SHOP_A, 7, 300), SHOP_B: _build(settings, SHOP_B, 8, 120)}


@pytest.fixture
def shopper(client, settings, shop):
    user = register(client)
    user.dbs = {name: user.connect_database(settings, name)["id"] for name in (SHOP_A, SHOP_B)}
    user.keyed = {"Authorization": f"Bearer {user.create_key()[0]}"}
    return user


def _search(user, status: int = 200, **body):
    r = user.client.post("/api/v1/search", json=body, headers=user.keyed)
    assert r.status_code == status, r.get_json()
    return r.get_json()["data"] if status == 200 else r.get_json()["error"]


def _matching_ids(settings, database: str, query: str, where: str = "1 = 1", params: tuple = ()) -> set[int]:
    """What MySQL itself says: products matching `query` (natural mode) and `where`."""
    conn = connect_admin(settings, database)
    with conn.cursor() as cur:
        match = "MATCH (name, description) AGAINST (%s IN NATURAL LANGUAGE MODE)" if query else "1 = 1"
        cur.execute(f"SELECT id FROM products WHERE {match} AND ({where})", ((query,) if query else ()) + params)
        found = {row[0] for row in cur.fetchall()}
    conn.close()
    return found


def _ids(data, table: str = "products") -> list[int]:
    return [r["data"]["id"] for r in data["results"] if r["table"] == table]


# ---- filter -----------------------------------------------------------------------------------------------
FILTERS = [
    ('category = "audio"', "category = 'audio'"),
    ("price 10 TO 50.5", "price BETWEEN 10 AND 50.5"),
    ('category IN ["audio", "books"] AND in_stock = true', "category IN ('audio','books') AND in_stock = 1"),
    ("category IS NULL", "category IS NULL"),
    ('category != "audio"', "(category <> 'audio' OR category IS NULL)"),
    ('NOT category = "audio"', "(category <> 'audio' OR category IS NULL)"),
    ('NOT (category IN ["audio"] OR price > 100)', "(category NOT IN ('audio') OR category IS NULL) AND price <= 100"),
    ('created_at >= "2026-06-01" AND status = open', "created_at >= '2026-06-01' AND status = 'open'"),
    ("products.price < 20 OR tenant_id = 2", "price < 20 OR tenant_id = 2"),
    ("status NOT IN ['closed', 'pending'] AND price <= 99.99", "status NOT IN ('closed','pending') AND price <= 99.99"),
]


@pytest.mark.parametrize(("expression", "sql"), FILTERS)
def test_a_filter_returns_exactly_the_rows_mysql_says_match(shopper, settings, expression, sql):
    data = _search(
        shopper,
        query="wireless headphones",
        filter=expression,
        tables=["products"],
        databases=[shopper.dbs[SHOP_A]],
        limit=100,
        ranking="mysql",
    )
    expected = _matching_ids(settings, SHOP_A, "wireless headphones", sql)
    assert data["totalCount"] == len(expected)
    assert set(_ids(data)) <= expected and len(_ids(data)) == min(100, len(expected))
    browse = _search(
        shopper, query="", filter=expression, tables=["products"], databases=[shopper.dbs[SHOP_A]], limit=100
    )
    assert browse["totalCount"] == len(_matching_ids(settings, SHOP_A, "", sql)), expression


def test_a_table_without_a_filter_column_is_left_out_and_named(shopper):
    data = _search(shopper, query="wireless", filter="price < 100", databases=[shopper.dbs[SHOP_A]])
    assert {r["table"] for r in data["results"]} == {"products"}
    assert any(w.startswith("FILTER_COLUMN_MISSING") and "articles" in w for w in data["warnings"]), data["warnings"]
    error = _search(shopper, 400, query="wireless", filter="colour = 'red'")
    assert error["code"] == "INVALID_FILTER" and "colour" in error["message"]
    error = _search(shopper, 400, query="wireless", filter="price < 100", tables=["articles"])
    assert error["code"] == "INVALID_FILTER" and "price" in error["message"]


def test_a_table_qualified_condition_never_widens_another_table(shopper):
    data = _search(
        shopper,
        query="",
        filter="products.price < 20 OR articles.tenant_id = 1",
        databases=[shopper.dbs[SHOP_A]],
        tables=["products", "articles"],
        limit=100,
    )
    for r in data["results"]:
        if r["table"] == "products":
            assert r["data"]["price"] < 20
        else:
            assert r["data"]["tenant_id"] == 1
    error = _search(shopper, 400, query="x", filter="orders.total > 1")
    assert error["code"] == "INVALID_FILTER" and "orders" in error["message"]


@pytest.mark.parametrize(
    ("expression", "position"),
    [("price >", 8), ("(price > 1", 11), ('category = "x', 12), ("price 1 TO", 11), ("a = 1 b", 7)],
)
def test_a_malformed_filter_is_a_400_with_the_position(shopper, expression, position):
    error = _search(shopper, 400, query="wireless", filter=expression)
    assert error["code"] == "INVALID_FILTER" and error["details"][0]["position"] == position, error


@pytest.mark.parametrize(
    ("expression", "column"),
    [
        ('price = "cheap"', "price"),
        ("created_at > 5", "created_at"),
        ('status = "gone"', "status"),
        ('created_at = "yesterday"', "created_at"),
    ],
)
def test_a_value_that_does_not_fit_its_column_is_a_400_naming_both(shopper, expression, column):
    error = _search(shopper, 400, query="wireless", filter=expression, tables=["products"])
    assert error["code"] == "INVALID_FILTER" and error["details"][0]["column"] == column, error
    assert error["details"][0]["value"]


def test_filter_limits(shopper):
    too_many = " OR ".join(f"price = {i}" for i in range(51))
    assert _search(shopper, 400, query="x", filter=too_many)["code"] == "INVALID_FILTER"
    deep = "(" * 11 + "price = 1" + ")" * 11
    assert _search(shopper, 400, query="x", filter=deep)["code"] == "INVALID_FILTER"
    assert _search(shopper, 400, query="x", filter="price = 1 " + "x" * 2000)["code"] == "VALIDATION_ERROR"


def test_meilisearch_array_filters(shopper, settings):
    data = _search(
        shopper,
        query="",
        filter=['category = "audio"', ["price < 20", "price > 400"]],
        tables=["products"],
        databases=[shopper.dbs[SHOP_A]],
    )
    expected = _matching_ids(settings, SHOP_A, "", "category = 'audio' AND (price < 20 OR price > 400)")
    assert data["totalCount"] == len(expected)


# ---- facets -------------------------------------------------------------------------------------------------
def test_facets_count_every_match_of_every_table(shopper, settings):
    data = _search(shopper, query="wireless", facets=["category", "price", "status"], limit=5, ranking="mysql")
    for database in (SHOP_A, SHOP_B):
        assert database  # both connected: counts below sum over them
    expected: dict[str, int] = {}
    prices = []
    for database in (SHOP_A, SHOP_B):
        conn = connect_admin(settings, database)
        with conn.cursor() as cur:
            for table in ("products", "articles"):
                columns = "name, description" if table == "products" else "title, body"
                cur.execute(
                    f"SELECT category, COUNT(*) FROM {table} WHERE MATCH ({columns}) AGAINST ('wireless')"
                    " AND category IS NOT NULL GROUP BY category"
                )
                for category, n in cur.fetchall():
                    expected[category] = expected.get(category, 0) + n
            cur.execute(
                "SELECT MIN(price), MAX(price) FROM products WHERE MATCH (name, description) AGAINST ('wireless')"
            )
            prices.append(cur.fetchone())
        conn.close()
    assert data["facetDistribution"]["category"] == dict(sorted(expected.items(), key=lambda kv: (-kv[1], kv[0])))
    assert sum(data["facetDistribution"]["status"].values()) <= data["totalCount"]
    stats = data["facetStats"]["price"]
    assert stats == {"min": float(min(p[0] for p in prices)), "max": float(max(p[1] for p in prices))}
    assert "category" not in data["facetStats"]
    top = _search(shopper, query="wireless", facets=["price"], maxValuesPerFacet=3)["facetDistribution"]["price"]
    assert len(top) == 3

    # one table: the database returns the top values itself, and the bounds in the same statement's rollup row,
    # which takes none of the top values' places
    one = _search(
        shopper, query="wireless", facets=["price", "created_at"], maxValuesPerFacet=3, tables=["products"],
        databases=[shopper.dbs[SHOP_A]],
    )  # fmt: skip
    conn = connect_admin(settings, SHOP_A)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT price, COUNT(*) AS n FROM products WHERE MATCH (name, description) AGAINST ('wireless')"
            " GROUP BY price ORDER BY n DESC, price LIMIT 3"
        )
        most = {float(price): n for price, n in cur.fetchall()}
        cur.execute(
            "SELECT MIN(created_at), MAX(created_at) FROM products WHERE MATCH (name, description) AGAINST ('wireless')"
        )
        first, last = cur.fetchone()
    conn.close()
    assert {float(v): n for v, n in one["facetDistribution"]["price"].items()} == most
    assert one["facetStats"]["price"] == {"min": float(prices[0][0]), "max": float(prices[0][1])}
    assert one["facetStats"]["created_at"] == {"min": first.isoformat(), "max": last.isoformat()}


def test_facets_follow_the_filter_and_a_bad_facet_is_a_400(shopper):
    data = _search(shopper, query="", filter="in_stock = false", facets=["in_stock"], tables=["products"])
    assert list(data["facetDistribution"]["in_stock"]) == ["0"]
    assert _search(shopper, 400, query="x", facets=["description"])["details"][0]["field"] == "facets"  # TEXT
    assert _search(shopper, 400, query="x", facets=["nope"])["details"][0]["field"] == "facets"


# ---- sort -----------------------------------------------------------------------------------------------------
def test_sorted_pages_concatenate_to_one_long_page_across_databases(shopper):
    body = {"query": "wireless", "sort": ["price:asc"], "tables": ["products"]}
    whole = _search(shopper, **body, limit=100)
    pages = [r for offset in range(0, 100, 20) for r in _search(shopper, **body, limit=20, offset=offset)["results"]]
    assert [r["id"] for r in pages] == [r["id"] for r in whole["results"]]
    prices = [r["data"]["price"] for r in whole["results"]]
    assert prices == sorted(prices) and whole["rankingUsed"] == "sort"
    assert {r["database"] for r in whole["results"]} == set(shopper.dbs.values())
    newest = _search(shopper, query="", sort=["created_at:desc", "name:asc"], tables=["products"], limit=50)
    stamps = [r["data"]["created_at"] for r in newest["results"]]
    assert stamps == sorted(stamps, reverse=True)


def test_sort_errors(shopper):
    assert _search(shopper, 400, query="x", sort=["price"])["code"] == "INVALID_SORT"
    assert _search(shopper, 400, query="x", sort=["_score:asc"])["code"] == "INVALID_SORT"
    assert _search(shopper, 400, query="x", sort=["a:asc", "b:asc", "c:asc", "d:asc"])["code"] == "VALIDATION_ERROR"
    assert _search(shopper, 400, query="x", sort=["missing:asc"])["code"] == "INVALID_SORT"
    assert _search(shopper, 400, query="x", sort=["price:asc"], searchMode="semantic")["code"] == "INVALID_SORT"


def test_sorting_by_a_column_of_different_kinds_across_tables_is_refused(shopper, settings):
    conn = connect_admin(settings, SHOP_B)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS odd (id INT PRIMARY KEY, price VARCHAR(10)) ENGINE=InnoDB")
        cur.execute("REPLACE INTO odd VALUES (1, 'ten')")
    conn.close()
    error = _search(shopper, 400, query="", sort=["price:asc"], tables=["products", "odd"], filter="price IS NOT NULL")
    assert error["code"] == "INVALID_SORT" and "price" in error["message"]


# ---- browse ----------------------------------------------------------------------------------------------------
def test_browse_reads_tables_without_a_fulltext_index_with_an_exact_total(shopper):
    data = _search(shopper, query="", filter="status = open", tables=["tickets"], sort=["opened:desc"], limit=100)
    assert data["modeUsed"] == "browse" and data["totalCount"] == 2 * 20  # 60 tickets, a third of them open
    assert all(r["data"]["status"] == "open" and r["matchStrategy"] == "browse" for r in data["results"])
    assert _search(shopper, 400, query="")["details"][0]["field"] == "query"


def test_an_unfiltered_search_answers_as_before(shopper):
    plain = _search(shopper, query="wireless headphones")
    assert "facetDistribution" not in plain and plain["rankingUsed"] == "bm25" and plain["modeUsed"] == "natural"


@pytest.mark.parametrize(
    "extra",
    [{}, {"sort": ["price:desc"]}, {"filter": "price < 250"}, {"ranking": "mysql"}, {"offset": 20}, {"query": ""}],
)
def test_a_faceted_page_is_the_page_without_facets(shopper, extra):
    """Facets read every match with the page (one MATCH): the page itself must not change."""
    body = {"query": "wireless lamp", "limit": 20, "tables": ["products"], **extra}
    if not body["query"]:
        body["filter"] = "price > 100"
    plain = _search(shopper, **body)
    faceted = _search(shopper, **body, facets=["category", "price"])
    assert [(r["id"], r["relevanceScore"]) for r in faceted["results"]] == [
        (r["id"], r["relevanceScore"]) for r in plain["results"]
    ]
    assert faceted["totalCount"] == plain["totalCount"] and faceted["rankingUsed"] == plain["rankingUsed"]
