"""The write-behind buffer: the first item after a quiet interval at once, the rest batched into one Redis
pipeline per interval; visible across workers; safe without Redis."""

import json
import threading
import time
import uuid

import pytest
import redis
from conftest import TEST_REDIS_DB, make_settings, register

from altus4 import create_app
from altus4.errors import DatabaseUnavailable
from altus4.redis_store import RedisStore
from altus4.services.analytics import _EPOCH, _PENDING, _row
from altus4.write_behind import INFLIGHT, Sink, WriteBehind

DEPLOYMENT = "wb-test"  # the deployment id these buffers name their keys by


def _buffer(settings, interval: float, **extra) -> WriteBehind:
    return WriteBehind(RedisStore(settings), interval, lambda: DEPLOYMENT, **extra)


def _list_sink(key: str, flushed: list, direct: list) -> Sink:
    return Sink(
        stage=lambda pipe, items: pipe.rpush(key, *items),
        write_direct=direct.extend,
        flush=lambda: flushed.append(time.monotonic()),
        lock=f"{key}:lock",
        lock_seconds=30,
    )


def test_first_item_goes_at_once_the_rest_as_one_pipeline_then_one_flush(settings):
    key = f"wb-test:{uuid.uuid4().hex}"
    plain = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=TEST_REDIS_DB)
    flushed, direct = [], []
    buffer = _buffer(settings, interval=0.3)
    buffer.register("test", _list_sink(key, flushed, direct))
    try:
        for n in range(50):
            buffer.add("test", str(n))
        assert plain.llen(key) == 1  # the first went at once (quiet before it); the others wait
        deadline = time.monotonic() + 5
        while plain.llen(key) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [int(v) for v in plain.lrange(key, 0, -1)] == list(range(50))
        time.sleep(0.1)
        assert len(flushed) == 1 and direct == []  # the background push took the flush lock once
        buffer.add("test", "late")  # quiet again for longer than the interval: sent within add()
        assert plain.lrange(key, -1, -1) == [b"late"] and len(flushed) == 1
    finally:
        buffer.close()
        plain.delete(key, buffer.key(f"{key}:lock"))


def test_a_steady_flow_goes_with_the_background_push_after_its_first_item(settings):
    """Only an item after a quiet interval goes inside its request: a flow with shorter gaps is carried by
    the background push (it once sent one item per interval at once too, a pipeline per few requests)."""
    key = f"wb-test:{uuid.uuid4().hex}"
    plain = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=TEST_REDIS_DB)
    in_request = []

    def stage(pipe, items: list) -> None:
        if threading.current_thread() is threading.main_thread():
            in_request.append(list(items))
        pipe.rpush(key, *items)

    buffer = _buffer(settings, interval=0.2)
    buffer.register("test", Sink(stage, lambda items: None, lambda: None, f"{key}:lock", 30))
    try:
        for n in range(12):  # 0.6 s, gaps of 0.05 s
            buffer.add("test", str(n))
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while plain.llen(key) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [int(v) for v in plain.lrange(key, 0, -1)] == list(range(12))
        assert in_request == [["0"]]
    finally:
        buffer.close()
        plain.delete(key, buffer.key(f"{key}:lock"))


def test_without_redis_items_are_written_directly():
    unreachable = make_settings(REDIS_PORT="6399")
    flushed, direct = [], []
    buffer = _buffer(unreachable, interval=60)
    buffer.register("test", _list_sink("wb-test:none", flushed, direct))
    buffer.add("test", "a")
    buffer.add("test", "b")
    buffer.close()
    assert direct == ["a", "b"] and flushed == []


def test_items_neither_redis_nor_mysql_takes_wait_for_the_next_push():
    """No Redis and MySQL refusing: the items stay in the process (they were once dropped) and go once
    MySQL takes them again."""
    written, refusing = [], [True]

    def direct(items: list) -> None:
        if refusing[0]:
            raise DatabaseUnavailable()
        written.extend(items)

    buffer = _buffer(make_settings(REDIS_PORT="6399"), interval=60)
    buffer.register("test", Sink(lambda pipe, items: None, direct, lambda: None, "wb-test:none:lock", 30))
    buffer.add("test", "a")  # the first after a quiet interval goes at once: refused by both
    buffer.add("test", "b")
    buffer.push(flush=False)  # refused again, kept in order
    assert written == []
    refusing[0] = False
    buffer.close()  # what is left goes on exit
    assert written == ["a", "b"]


@pytest.fixture
def two_workers(migrated, targets):
    """Two apps (workers: separate buffers, shared stores) and a key whose search was served by the first."""
    first, second = create_app(migrated), create_app(migrated)
    user = register(first.test_client())
    user.connect_database(migrated, targets["a"])
    secret, _ = user.create_key()
    keyed = {"Authorization": f"Bearer {secret}"}
    r = user.client.post("/api/v1/search", headers=keyed, json={"query": "gevent workers"})
    assert r.status_code == 200, r.get_json()
    yield first, second, keyed
    first.extensions["altus4"].close()
    second.extensions["altus4"].close()


def test_a_search_on_one_worker_shows_in_another_workers_history(two_workers):
    _, second, keyed = two_workers
    other = second.test_client()
    deadline = time.monotonic() + 5
    total = 0
    while total == 0 and time.monotonic() < deadline:
        total = other.get("/api/v1/search/history", headers=keyed).get_json()["meta"]["total"]
        time.sleep(0.05)
    assert total == 1


def test_a_read_waits_for_another_workers_flush_still_writing(two_workers):
    """Worker A's flush has taken the queue and not written it yet; worker B's history read finds the queue
    empty, and must wait for A's write rather than answer without the search."""
    first, second, keyed = two_workers
    a = first.extensions["altus4"].analytics
    taken = a.write_behind.take(_PENDING, _EPOCH)  # A's flush, in the middle of it
    assert len(taken.items) == 1

    def finish() -> None:
        time.sleep(0.5)
        a._insert([_row(json.loads(e)) for e in taken.items])
        a.write_behind.done(taken)

    writer = threading.Thread(target=finish)
    writer.start()
    started = time.monotonic()
    history = second.test_client().get("/api/v1/search/history", headers=keyed).get_json()
    writer.join()
    assert history["meta"]["total"] == 1 and time.monotonic() - started >= 0.4


def test_a_flush_that_died_is_taken_over_and_refused_items_go_back_in_order(settings):
    """What a flush took stays in Redis until it is done: a flush whose process died (took, never finished)
    is taken over by the next flush `adopt_after` seconds later; items MySQL refused go back to the head."""
    names = f"wb-test:{{pending}}:{uuid.uuid4().hex}", f"wb-test:{{pending}}:epoch:{uuid.uuid4().hex}"
    plain = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=TEST_REDIS_DB, decode_responses=True)
    dead, alive = (_buffer(settings, interval=60, adopt_after=0.5) for _ in range(2))
    queue, epoch, inflight = alive.key(names[0]), alive.key(names[1]), alive.key(INFLIGHT)
    try:
        plain.rpush(queue, "a", "b")
        lost = dead.take(*names)  # and the process dies before done()
        assert lost.items == ["a", "b"] and plain.lrange(lost.key, 0, -1) == ["a", "b"]
        plain.rpush(queue, "c")
        assert alive.take(*names).items == ["c"]  # not given up for dead yet ("c" is now in flight too)
        time.sleep(0.6)
        plain.rpush(queue, "d")
        adopted = alive.take(*names)
        assert sorted(adopted.items) == ["a", "b", "c", "d"]  # every taken queue older than adopt_after, and "d"
        assert not plain.exists(lost.key) and plain.zscore(inflight, lost.key) is None
        alive.give_back(adopted, ["c", "d"])  # written up to "b", then MySQL refused the rest
        plain.rpush(queue, "e")
        assert plain.lrange(queue, 0, -1) == ["c", "d", "e"] and not plain.exists(adopted.key)
        again = alive.take(*names)
        alive.done(again)
        assert plain.zscore(inflight, again.key) is None and not plain.exists(again.key)
        assert int(plain.get(epoch)) == 4  # every take moved the epoch
    finally:
        plain.delete(queue, epoch)
