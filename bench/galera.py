"""What synchronous replication costs writes: the metadata database as one server against a three-node
Galera cluster on the same machine (issue #32).

    .venv/bin/python bench/galera.py [--rounds 3 --duration 15]    # `make bench` runs it last

For each topology, in interleaved rounds, through gunicorn (2 gevent workers) over HTTP:
- p50/p95 of key creation (`POST /api/v1/keys`) and of registration (`POST /api/v1/auth/register`, whose
  password hashing is most of it), one client, sequential;
- a write-heavy mix at 8 clients for `--duration` seconds: per client, a key created then revoked, a
  profile update, a registration every fifth turn, and two searches; requests/s and p50/p95.
Every node runs on this machine's cores, so the cluster pays three servers' CPU beside the API's: a
deployment with one node per host pays the network round trip of certification instead.
Writes bench/results/galera.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import connection_body, env_for_tests, make_settings  # noqa: E402
from galera import GaleraSet, available  # noqa: E402
from servers import call, start_gunicorn  # noqa: E402

from altus4.db.migrate import Migrator  # noqa: E402
from altus4.demo import build_demo_database  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "galera.json"
TARGET = "altus4_bench_galera_target"


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
    }


def timed(url: str, method: str, body, token: str | None, expect: int) -> tuple[float, dict]:
    started = time.perf_counter()
    status, answer, _ = call(url, method, body, token, timeout=30)
    if status != expect:
        raise RuntimeError(f"{method} {url}: {status} {answer}")
    return time.perf_counter() - started, answer


def user(base: str, settings) -> tuple[str, str]:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    signup = {"email": email, "password": "longenough1", "name": "Bench"}
    _, body = timed(base + "/api/v1/auth/register", "POST", signup, None, 201)
    token = body["data"]["token"]
    own = {"username": settings.db_username, "password": settings.db_password}  # the bench's own server
    timed(base + "/api/v1/databases", "POST", connection_body(settings, TARGET, **own), token, 201)
    _, key = timed(base + "/api/v1/keys", "POST", {"name": "bench", "environment": "test"}, token, 201)
    return token, key["data"]["secretKey"]


def sequential(base: str, token: str, count: int) -> dict:
    keys = [
        timed(base + "/api/v1/keys", "POST", {"name": f"bench key {i}", "environment": "test"}, token, 201)[0]
        for i in range(count)
    ]
    registrations = [
        timed(
            base + "/api/v1/auth/register",
            "POST",
            {"email": f"seq-{uuid.uuid4().hex[:12]}@example.com", "password": "longenough1", "name": "Bench"},
            None,
            201,
        )[0]
        for _ in range(count // 4)
    ]
    return {"key_creation": percentiles(keys), "registration": percentiles(registrations)}


def mix(base: str, settings, clients: int, duration: float) -> dict:
    times: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + duration

    def client() -> None:
        token, key = user(base, settings)
        turn = 0
        while time.monotonic() < stop:
            turn += 1
            try:
                spent, created = timed(
                    base + "/api/v1/keys", "POST", {"name": f"mix key {turn}", "environment": "test"}, token, 201
                )
                times.append(spent)
                key_id = created["data"]["apiKey"]["id"]
                times.append(timed(base + f"/api/v1/keys/{key_id}", "DELETE", None, token, 200)[0])
                times.append(timed(base + "/api/v1/auth/profile", "PUT", {"name": f"Bench {turn}"}, token, 200)[0])
                if turn % 5 == 0:
                    email = f"mix-{uuid.uuid4().hex[:12]}@example.com"
                    body = {"email": email, "password": "longenough1", "name": "Bench"}
                    times.append(timed(base + "/api/v1/auth/register", "POST", body, None, 201)[0])
                for query in ("wireless headphones", f"ergonomic {turn}"):
                    times.append(timed(base + "/api/v1/search", "POST", {"query": query, "limit": 5}, key, 200)[0])
            except RuntimeError as exc:
                errors.append(str(exc)[:200])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "requests_per_s": round(len(times) / (time.monotonic() - started), 1),
        **percentiles(times),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    if available():
        sys.exit(f"cannot run Galera here: {available()}")
    settings = make_settings()
    build_demo_database(settings, TARGET, products=2000, articles=200, seed=7)
    cluster = GaleraSet(Path("/tmp/altus4-galera-bench")).start()
    work = Path(tempfile.mkdtemp(prefix="altus4-galera-bench-"))
    topologies = {
        "single server": env_for_tests(DB_DATABASE="altus4_bench_single"),
        "Galera, 3 nodes": env_for_tests(**cluster.app_env("altus4_bench_galera")),
    }
    rounds: dict[str, list[dict]] = {name: [] for name in topologies}
    try:
        for env in topologies.values():
            Migrator(make_settings(**env)).fresh()
        for r in range(args.rounds):
            for name, env in topologies.items():
                server = start_gunicorn(env, work, workers=2)
                try:
                    token, _ = user(server.url, settings)
                    result = {
                        **sequential(server.url, token, args.count),
                        "mix": mix(server.url, settings, 8, args.duration),
                    }
                finally:
                    server.stop()
                rounds[name].append(result)
                print(f"round {r + 1} {name}: {json.dumps(result)}", flush=True)
    finally:
        cluster.stop()

    def med(name: str, *path: str) -> float:
        values = []
        for result in rounds[name]:
            value = result
            for step in path:
                value = value[step]
            values.append(value)
        return statistics.median(values)

    rows = [
        ("key creation p50 / p95 ms", ("key_creation", "p50_ms"), ("key_creation", "p95_ms")),
        ("registration p50 / p95 ms", ("registration", "p50_ms"), ("registration", "p95_ms")),
        ("write-heavy mix, 8 clients: p50 / p95 ms", ("mix", "p50_ms"), ("mix", "p95_ms")),
    ]
    print("\n| what (median of rounds) | " + " | ".join(topologies) + " |\n|---|---|---|")
    for label, a, b in rows:
        print(f"| {label} | " + " | ".join(f"{med(n, *a)} / {med(n, *b)}" for n in topologies) + " |")
    print(
        "| write-heavy mix, 8 clients: req/s | "
        + " | ".join(str(med(n, "mix", "requests_per_s")) for n in topologies)
        + " |"
    )
    RESULTS.write_text(
        json.dumps(
            {"date": datetime.now(UTC).isoformat(timespec="seconds"), "args": vars(args), "rounds": rounds}, indent=1
        )
    )


if __name__ == "__main__":
    main()
