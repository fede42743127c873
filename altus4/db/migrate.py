"""Schema migrations: numbered `NNNN_name.up.sql` / `.down.sql` files, recorded in `schema_migrations`.

Each `migrate` run is one batch; `rollback` undoes the last batch. MySQL commits
DDL implicitly, so a failing file is reported with the statement that failed and
is not recorded: fix it and run again (its statements use plain CREATE, so the
error also tells you what exists).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pymysql

from altus4.config import Settings
from altus4.db.pool import connect_kwargs

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.up\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    up: Path
    down: Path


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.up.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"bad migration file name: {path.name}")
        down = path.with_name(path.name.replace(".up.sql", ".down.sql"))
        if not down.exists():
            raise MigrationError(f"{path.name} has no {down.name}")
        found.append(Migration(match.group(1), match.group(2), path, down))
    return found


def split_statements(sql: str) -> list[str]:
    """Statements separated by `;` at the end of a line; `--` comment lines dropped."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


class Migrator:
    def __init__(self, settings: Settings, directory: Path = MIGRATIONS_DIR):
        self.settings = settings
        self.directory = directory

    def _connect(self) -> pymysql.Connection:
        s = self.settings
        failures = []
        for host, port in s.db_nodes:  # a Galera list: the first node that answers (the others replicate)
            try:
                conn = pymysql.connect(**connect_kwargs(s, host, port, None))
                break
            except pymysql.MySQLError as exc:
                failures.append(f"{host}:{port}: {exc}")
        else:
            raise MigrationError(f"cannot connect to MySQL at {'; '.join(failures)}")
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS `{s.db_database.replace('`', '``')}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
            cur.execute(f"USE `{s.db_database.replace('`', '``')}`")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version VARCHAR(32) NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL,"
                " batch INT NOT NULL, applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))"
                " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            )
        return conn

    def status(self) -> list[dict]:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT version, batch, applied_at FROM schema_migrations")
                applied = {row["version"]: row for row in cur.fetchall()}
        finally:
            conn.close()
        return [
            {
                "version": m.version,
                "name": m.name,
                "applied": m.version in applied,
                "batch": applied.get(m.version, {}).get("batch"),
                "appliedAt": applied.get(m.version, {}).get("applied_at"),
            }
            for m in available(self.directory)
        ]

    def _run_file(self, cur, path: Path) -> None:
        for statement in split_statements(path.read_text()):
            try:
                cur.execute(statement)
            except pymysql.MySQLError as exc:
                raise MigrationError(f"{path.name} failed at: {statement[:120]}… → {exc}") from exc

    def migrate(self) -> list[str]:
        """Apply what is pending. Runs under a named lock, so instances started together (a Swarm stack's
        migrate task and a rolling update, several containers' entrypoints) apply each migration once."""
        conn = self._connect()
        done = []
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT GET_LOCK('altus4_migrate', 60) AS locked")
                if not cur.fetchone()["locked"]:
                    raise MigrationError("another migration has held the lock 'altus4_migrate' for 60 s")
                cur.execute("SELECT version FROM schema_migrations")
                applied = {row["version"] for row in cur.fetchall()}
                cur.execute("SELECT COALESCE(MAX(batch), 0) + 1 AS next FROM schema_migrations")
                batch = cur.fetchone()["next"]
                for m in available(self.directory):
                    if m.version in applied:
                        continue
                    self._run_file(cur, m.up)
                    cur.execute(
                        "INSERT INTO schema_migrations (version, name, batch) VALUES (%s, %s, %s)",
                        (m.version, m.name, batch),
                    )
                    done.append(f"{m.version}_{m.name}")
        finally:
            conn.close()
        return done

    def rollback(self, steps: int | None = None) -> list[str]:
        """Undo the last batch, or the last `steps` migrations when given."""
        by_version = {m.version: m for m in available(self.directory)}
        conn = self._connect()
        undone = []
        try:
            with conn.cursor() as cur:
                if steps is None:
                    cur.execute(
                        "SELECT version FROM schema_migrations WHERE batch = "
                        "(SELECT MAX(batch) FROM schema_migrations) ORDER BY version DESC"
                    )
                else:
                    cur.execute("SELECT version FROM schema_migrations ORDER BY version DESC LIMIT %s", (steps,))
                for row in cur.fetchall():
                    m = by_version.get(row["version"])
                    if m is None:
                        raise MigrationError(f"applied migration {row['version']} has no file to roll back with")
                    self._run_file(cur, m.down)
                    cur.execute("DELETE FROM schema_migrations WHERE version = %s", (m.version,))
                    undone.append(f"{m.version}_{m.name}")
        finally:
            conn.close()
        return undone

    def fresh(self) -> list[str]:
        """Roll everything back, then migrate: for development and tests only."""
        while self.rollback():
            pass
        return self.migrate()

    def pending(self) -> list[str]:
        return [f"{m['version']}_{m['name']}" for m in self.status() if not m["applied"]]
