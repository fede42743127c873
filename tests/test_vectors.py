"""Vectors at scale (issue #28): a node's workers share one memory-mapped index per table, changes reach it
through the delta, and the follower keeps the stored vectors up to date with the table."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import connect_admin, env_for_tests, fresh_fulltext_table, make_settings, register
from fake_openai import FakeOpenAI

from altus4 import create_app
from altus4.ai.ann import NodeIndexes
from altus4.ai.store import to_bytes
from altus4.jobs.follower import Follower, FollowSettings

DB = "altus4_test_vectors"
FILLER = [f"filler note number {i} about gardening" for i in range(40)]


@pytest.fixture
def fake():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def notes(migrated):
    fresh_fulltext_table(
        migrated,
        DB,
        "notes",
        "CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT NOT NULL, FULLTEXT (body)) ENGINE=InnoDB",
        "INSERT INTO notes (body) VALUES (%s)",
        [(text,) for text in ["redis cache", "mysql fulltext search", *FILLER]],
    )
    return DB


def _app(fake, directory: Path, **extra):
    return create_app(
        make_settings(
            OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_EMBEDDING_MODEL="fake-embed",
            SEARCH_CACHE_TTL="0",
            VECTOR_INDEX_DIR=str(directory),
            **extra,
        )
    )


def _index(app, user, table: str = "notes") -> str:
    from altus4.jobs.indexer import index_table

    svc = app.extensions["altus4"]
    connection = user.call("GET", "/api/v1/databases").get_json()["data"][0]
    row = svc.connections.get(user.id, connection["id"])
    index_table(svc.connections, svc.ai, row, table, vector_index=svc.search.vectors)
    return connection["id"]


def _semantic(user, headers, query: str) -> list[int]:
    r = user.client.post(
        "/api/v1/search", json={"query": query, "searchMode": "semantic", "limit": 10}, headers=headers
    )
    assert r.status_code == 200, r.get_json()
    data = r.get_json()["data"]
    assert data["aiUsed"] is True, data
    return [row["data"]["id"] for row in data["results"]]


def _backdate(settings, connection_id: str) -> None:
    conn = connect_admin(settings, settings.db_database)
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE row_embeddings SET updated_at = UTC_TIMESTAMP(3) - INTERVAL 1 MINUTE WHERE connection_id = %s",
            (connection_id,),
        )
    conn.close()


def _insert(settings, body: str) -> int:
    conn = connect_admin(settings, DB)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO notes (body) VALUES (%s)", (body,))
        new = cur.lastrowid
    conn.close()
    return new


def test_a_node_builds_one_index_its_workers_share_and_changes_reach_it(migrated, notes, fake, tmp_path):
    """Above VECTOR_EXACT_MAX_ROWS a table is searched through a memory-mapped index built once per node (two
    workers, one build); rows embedded after the build are in the delta, found at once without a rebuild."""
    workers = [_app(fake, tmp_path, VECTOR_EXACT_MAX_ROWS="0") for _ in range(2)]
    try:
        user = register(workers[0].test_client())
        user.connect_database(migrated, DB)
        headers = user.key_headers()
        connection_id = _index(workers[0], user)
        _backdate(migrated, connection_id)  # embedded a while ago: the node's build reads them
        other = copy.copy(user)
        other.client = workers[1].test_client()  # the same user, served by the other worker
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the first searches start the node's build, in the background
            found = [_semantic(u, headers, "automobile") for u in (user, other)]
            if all(found):
                break
            time.sleep(0.2)
        manifests = list(tmp_path.glob("*/manifest.json"))
        assert len(manifests) == 1 and len(list(tmp_path.glob("*/*.usearch"))) == 1  # one build, shared
        car = _insert(migrated, "car repair shop")
        _index(workers[0], user)  # embeds the new row: after the base's watermark, so in every worker's delta
        for u in (user, other):
            assert car in _semantic(u, headers, "automobile")
        state = workers[1].extensions["altus4"].search.vectors._tables[(connection_id, "notes", "fake-embed")]
        assert state.base is not None and state.base.rows == 2 + len(FILLER)  # the ANN path answered
        assert [int(k) for k in state.delta.keys] == [car]  # the new row: in the delta, no rebuild
    finally:
        for app in workers:
            app.extensions["altus4"].close()


def test_ann_recall_against_exact_search(migrated, tmp_path):
    """2,000 clustered vectors: the HNSW index's top 10 against the exact top 10."""
    settings = make_settings()
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(20, 64))
    vectors = centers[rng.integers(0, 20, 2000)] + rng.normal(scale=0.3, size=(2000, 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    connection = "00000000-0000-4000-8000-0000000000aa"
    conn = connect_admin(settings, settings.db_database)
    with conn.cursor() as cur:
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        cur.execute("DELETE FROM row_embeddings WHERE connection_id = %s", (connection,))
        cur.executemany(
            "INSERT IGNORE INTO embeddings (model, content_hash, dims, vector) VALUES ('recall', %s, 64, %s)",
            [(f"h{i}", to_bytes(list(v))) for i, v in enumerate(vectors)],
        )
        cur.executemany(
            "INSERT INTO row_embeddings (connection_id, table_name, model, row_key, content_hash)"
            " VALUES (%s, 'points', 'recall', %s, %s)",
            [(connection, str(i), f"h{i}") for i in range(len(vectors))],
        )
        cur.execute(  # embedded a while ago: in the base, not in the delta
            "UPDATE row_embeddings SET updated_at = UTC_TIMESTAMP(3) - INTERVAL 1 MINUTE WHERE connection_id = %s",
            (connection,),
        )
        cur.execute("SET FOREIGN_KEY_CHECKS = 1")
    conn.close()
    app = create_app(make_settings(VECTOR_INDEX_DIR=str(tmp_path), VECTOR_EXACT_MAX_ROWS="0"))
    try:
        index: NodeIndexes = app.extensions["altus4"].search.vectors
        assert index.build((connection, "points", "recall")) is True
        index.nearest(connection, "points", "recall", list(vectors[0]), 10)
        state = index._tables[(connection, "points", "recall")]
        assert state.base is not None and state.base.rows == 2000 and not state.delta.keys  # the ANN answers
        queries = rng.normal(size=(50, 64))
        hits = 0
        for q in queries:
            exact = {str(i) for i in np.argsort(-(vectors @ q))[:10]}
            hits += len(exact & set(index.nearest(connection, "points", "recall", list(q), 10)))
        assert hits / 500 >= 0.95, hits / 500
    finally:
        app.extensions["altus4"].close()
        conn = connect_admin(settings, settings.db_database)
        with conn.cursor() as cur:
            cur.execute("DELETE FROM row_embeddings WHERE connection_id = %s", (connection,))
            cur.execute("DELETE FROM embeddings WHERE model = 'recall'")
        conn.close()


def test_the_follower_keeps_up_with_inserts_and_deletes(migrated, notes, fake, tmp_path, monkeypatch):
    """A row inserted into a followed table is found by semantic search (through its vector alone) within 60 s,
    and a deleted one leaves the vector candidates within 60 s too; one follower leads at a time."""
    app = _app(fake, tmp_path)
    followers = [Follower(app.extensions["altus4"], FollowSettings(0.3, 0.5, 3600)) for _ in range(2)]
    stop = threading.Event()
    threads = [threading.Thread(target=f.run, args=(stop,), daemon=True) for f in followers]
    try:
        user = register(app.test_client())
        user.connect_database(migrated, DB)
        headers = user.key_headers()
        connection_id = _index(app, user)
        for t in threads:
            t.start()
        assert "car" not in " ".join(FILLER)
        car = _insert(migrated, "car repair shop")
        started = time.monotonic()
        while car not in _semantic(user, headers, "automobile"):  # no shared word: its vector finds it
            assert time.monotonic() - started < 60, "the inserted row was not found within 60 s"
            time.sleep(0.3)
        found_after = time.monotonic() - started
        conn = connect_admin(migrated, DB)
        with conn.cursor() as cur:
            cur.execute("DELETE FROM notes WHERE id = %s", (car,))
        conn.close()
        vectors = app.extensions["altus4"].search.vectors
        started = time.monotonic()
        while str(car) in vectors.nearest(connection_id, "notes", "fake-embed", _embedding("automobile"), 5):
            assert time.monotonic() - started < 60, "the deleted row was still a vector candidate after 60 s"
            time.sleep(0.3)
        gone_after = time.monotonic() - started
        print(f"follower: inserted row found after {found_after:.1f} s, deleted row gone after {gone_after:.1f} s")
        assert sum(f.metrics.leader._value.get() for f in followers) == 1  # one leader
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        app.extensions["altus4"].close()


def _embedding(text: str) -> list[float]:
    from fake_openai import embed

    return embed(text)


def test_index_follow_without_a_model_idles_until_stopped(migrated):
    """A deployment's indexer service with no embedding endpoint says so and waits (no restart loop)."""
    import os
    import signal
    import subprocess
    import sys

    from click.testing import CliRunner
    from conftest import ROOT_DIR
    from servers import call, free_port

    from altus4.cli import main

    port = free_port()
    env = {**os.environ, **env_for_tests(FOLLOW_METRICS_PORT=str(port))}
    env.pop("OPENAI_API_KEY", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "altus4.cli", "index", "--follow"],
        cwd=ROOT_DIR,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert "following nothing" in line and proc.poll() is None
        assert call(f"http://127.0.0.1:{port}/metrics")[0] == 200  # what a deployment's health check reads
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    result = CliRunner().invoke(main, ["index"], env=env_for_tests())
    assert result.exit_code != 0 and "--follow" in result.output
