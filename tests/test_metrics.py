"""/metrics from a multi-worker gunicorn: every named metric present, values merged across workers."""

import re
import time
import uuid

import pytest
from conftest import away_from_window_edge, env_for_tests
from servers import account, call, free_port, metric_sum, start_gunicorn

pytestmark = pytest.mark.slow


def test_metrics_are_merged_across_workers(migrated, targets, tmp_path):
    server = start_gunicorn(env_for_tests(RATE_LIMIT_FREE="25"), tmp_path, workers=3)
    away_from_window_edge(3600, margin=30)
    try:
        base = server.url
        token, key = account(base, migrated, targets["a"])
        statuses = [call(base + "/api/v1/search", "POST", {"query": "gevent workers"}, key)[0] for _ in range(30)]
        assert statuses.count(200) == 25 and statuses.count(429) == 5
        for _ in range(5):
            call(base + f"/api/v1/keys/{uuid.uuid4()}", token=token)  # 404s on a templated route
        pids = set()
        for _ in range(6):  # any worker's scrape sees the same merged totals
            status, text, headers = call(base + "/metrics")
            assert status == 200
            searches = metric_sum(
                text, "altus4_request_duration_seconds_count", route="/api/v1/search", status_code="200"
            )
            limited = metric_sum(
                text, "altus4_request_duration_seconds_count", route="/api/v1/search", status_code="429"
            )
            assert (searches, limited) == (25, 5)
            pids.add(headers.get("X-Request-ID"))
        assert metric_sum(text, "altus4_request_duration_seconds_count", route="/api/v1/keys/<uuid:key_id>") == 5
        assert not re.search(r'route="/api/v1/keys/[0-9a-f]{8}-', text)  # templates, never raw paths
        assert metric_sum(text, "altus4_search_duration_seconds_count", search_mode="natural", database_count="1") == 25
        assert metric_sum(text, "altus4_rate_limit_exceeded_total", scope="api_key_free") == 5
        hits = metric_sum(text, "altus4_cache_requests_total", cache_type="search", result="hit")
        misses = metric_sum(text, "altus4_cache_requests_total", cache_type="search", result="miss")
        assert hits + misses == 25 and misses >= 1
        ratio = metric_sum(text, "altus4_cache_hit_ratio", cache_type="search")
        assert ratio == pytest.approx(hits / 25)
        assert metric_sum(text, "altus4_db_pool_wait_seconds_count", pool="primary") > 0
        assert "altus4_database_connections_active" in text  # livesum gauge: 0 when idle
        deadline = time.monotonic() + 5  # idle once a background batch flush (if one runs now) is done
        while (
            metric_sum(text, "altus4_database_connections_active", database_id="primary")
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
            text = call(base + "/metrics")[1]
        assert metric_sum(text, "altus4_database_connections_active", database_id="primary") == 0
        assert "altus4_ai_fallback_total" in text or "altus4_ai_fallback" in text
        assert "altus4_db_pool_exhausted" in text and "altus4_redis_errors_total" in text
    finally:
        server.stop()


def test_instances_on_one_host_keep_their_own_metrics_however_they_are_bound(migrated, targets, tmp_path):
    """Two instances with the same BIND in their environment, one moved by `-b`: the second's start must not
    wipe the first's samples (they once shared a directory named after BIND)."""
    first = start_gunicorn(env_for_tests(), tmp_path, workers=2)
    try:
        token, key = account(first.url, migrated, targets["a"])
        for _ in range(3):
            assert call(first.url + "/api/v1/search", "POST", {"query": "gevent workers"}, key)[0] == 200
        port = free_port()
        second = start_gunicorn(
            env_for_tests(BIND=f"127.0.0.1:{first.port}"), tmp_path, port=port, args=("-b", f"127.0.0.1:{port}")
        )
        try:
            assert call(second.url + "/api/v1/search", "POST", {"query": "slow queries"}, key)[0] == 200  # uncached
            for server, searches in ((first, 3), (second, 1)):
                text = call(server.url + "/metrics")[1]
                assert metric_sum(text, "altus4_search_duration_seconds_count") == searches
                assert "altus4_database_connections_active" in text
        finally:
            second.stop()
        text = call(first.url + "/metrics")[1]
        assert metric_sum(text, "altus4_search_duration_seconds_count") == 3  # the second's exit removed only its own
    finally:
        first.stop()
