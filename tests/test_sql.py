"""What every MySQL connection shares: dates parsed by the standard library give PyMySQL's own values, read
back from a real server, zero dates and fractions included."""

from __future__ import annotations

import pymysql
from conftest import connect_admin

from altus4.db import sql

DB = "altus4_test_sql"
VALUES = ["2024-03-05 12:34:56", "2024-03-05 12:34:56.120000", "0999-01-02 03:04:05", "0000-00-00 00:00:00", None]


def test_dates_read_as_pymysql_reads_them(settings):
    with connect_admin(settings) as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
        cur.execute(f"DROP TABLE IF EXISTS {DB}.dates")
        cur.execute(f"CREATE TABLE {DB}.dates (n INT PRIMARY KEY, at DATETIME(6), ts TIMESTAMP(2) NULL, d DATE)")
        cur.execute("SET SESSION sql_mode = ''")  # zero dates, as older tables hold them
        cur.executemany(
            f"INSERT INTO {DB}.dates VALUES (%s, %s, %s, %s)",
            [(n, v, v, v and v[:10]) for n, v in enumerate(VALUES)],
        )
    options = sql.client_options(settings.db_host, settings.db_port, settings.db_username, settings.db_password, DB, 5)
    plain = {k: v for k, v in options.items() if k != "conv"}
    rows = []
    for kwargs in (options, plain):
        with pymysql.connect(**kwargs) as conn, conn.cursor() as cur:
            cur.execute("SELECT * FROM dates ORDER BY n")
            rows.append(cur.fetchall())
    ours, pymysqls = rows
    assert ours == pymysqls
    assert (
        ours[1]["at"].microsecond == 120000 and ours[3]["at"] == "0000-00-00 00:00:00.000000" and ours[4]["d"] is None
    )
