"""The migration CLI against a scratch database: migrate, status, rollback, fresh."""

import pytest
from click.testing import CliRunner
from conftest import connect_admin, env_for_tests

from altus4.cli import main
from altus4.db.migrate import available, split_statements

SCRATCH = "altus4_test_migrations"


@pytest.fixture
def scratch(settings, monkeypatch):
    for name, value in env_for_tests(DB_DATABASE=SCRATCH).items():
        monkeypatch.setenv(name, value)
    conn = connect_admin(settings)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")
    yield conn
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {SCRATCH}")
    conn.close()


def _tables(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (SCRATCH,))
        return {row[0] for row in cur.fetchall()}


def test_migrate_creates_database_and_tables(scratch):
    runner = CliRunner()
    result = runner.invoke(main, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "migrated 0001_core" in result.output
    assert {"users", "api_keys", "database_connections", "search_analytics", "schema_migrations"} <= _tables(scratch)
    again = runner.invoke(main, ["migrate"])
    assert "nothing to migrate" in again.output
    status = runner.invoke(main, ["migrate:status"])
    assert "0001_core: applied (batch 1" in status.output


def test_rollback_and_fresh(scratch):
    runner = CliRunner()
    runner.invoke(main, ["migrate"])
    rolled = runner.invoke(main, ["migrate:rollback"])
    assert "rolled back 0001_core" in rolled.output
    assert _tables(scratch) == {"schema_migrations"}
    assert "pending" in runner.invoke(main, ["migrate:status"]).output
    fresh = runner.invoke(main, ["migrate:fresh", "--yes"])
    assert fresh.exit_code == 0 and "users" in _tables(scratch)


def test_bad_configuration_is_reported_not_raised(scratch, monkeypatch):
    monkeypatch.setenv("DB_PORT", "1")
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code != 0 and "cannot connect to MySQL" in result.output


def test_every_migration_has_a_down_file_and_parses():
    for migration in available():
        assert split_statements(migration.up.read_text())
        assert split_statements(migration.down.read_text())


def test_admin_comes_from_the_cli(scratch):
    runner = CliRunner()
    runner.invoke(main, ["migrate"])
    result = runner.invoke(
        main,
        ["user:create", "--email", "root@example.com", "--name", "Root", "--password", "operator-password", "--admin"],
    )
    assert result.exit_code == 0, result.output
    assert "created admin root@example.com" in result.output
    missing = runner.invoke(main, ["user:promote", "nobody@example.com"])
    assert missing.exit_code != 0 and "No user" in missing.output
