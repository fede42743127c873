"""`altus4 loadtest` against a real gunicorn server."""

import json

import pytest
from click.testing import CliRunner
from conftest import env_for_tests
from servers import account, start_gunicorn

from altus4.cli import main
from altus4.loadtest import percentile

pytestmark = pytest.mark.slow


def test_percentiles():
    values = [i / 1000 for i in range(1, 101)]
    assert percentile(values, 50) == 0.05 and percentile(values, 95) == 0.095 and percentile(values, 100) == 0.1
    assert percentile([], 50) == 0.0


def test_loadtest_reports_a_summary(migrated, targets, tmp_path):
    server = start_gunicorn(env_for_tests(), tmp_path, workers=2)
    try:
        _, key = account(server.url, migrated, targets["a"], tier="enterprise")
        queries = tmp_path / "queries.txt"
        queries.write_text("gevent workers\nredis caching\nmysql AND slow\n\n")
        result = CliRunner().invoke(
            main,
            [
                "loadtest",
                server.url,
                "--key",
                key,
                "--queries",
                str(queries),
                "--users",
                "4",
                "--duration",
                "3",
                "--modes",
                "natural,boolean",
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output.strip().splitlines()[-1])
        assert summary["requests"] > 20 and summary["successes"] == summary["requests"]
        assert summary["failures"] == {} and summary["throughput_rps"] > 5
        assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
        bad = CliRunner().invoke(
            main,
            [
                "loadtest",
                server.url,
                "--key",
                "altus4_sk_test_" + "x" * 40,
                "--queries",
                str(queries),
                "--users",
                "1",
                "--duration",
                "1",
                "--json",
            ],
        )
        assert json.loads(bad.output.strip().splitlines()[-1])["failures"]["401"] > 0
    finally:
        server.stop()
