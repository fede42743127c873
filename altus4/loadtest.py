"""`altus4 loadtest`: N simulated users searching a running Altus 4 for a while, then a summary.

Each user is a thread with its own keep-alive HTTP connection, picking queries from a list and search
modes from a mix, pausing `think` seconds between requests. Progress is printed every second; the
summary gives requests, failures by status, throughput and latency percentiles (`--json` for machines).
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit


@dataclass
class Summary:
    requests: int = 0
    successes: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # status (or error name) -> count
    duration_s: float = 0.0
    throughput_rps: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cpu_ms_per_request: float | None = None  # the server's workers' CPU time per request, when measured

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(pct / 100 * len(sorted_values)) - 1))]


def summarise(latencies: list[float], statuses: Counter, elapsed: float) -> Summary:
    ordered = sorted(latencies)
    ms = lambda pct: round(percentile(ordered, pct) * 1000, 2)  # noqa: E731
    ok = sum(n for s, n in statuses.items() if s.isdigit() and 200 <= int(s) < 300)
    total = sum(statuses.values())
    return Summary(
        requests=total,
        successes=ok,
        failures={s: n for s, n in sorted(statuses.items()) if not (s.isdigit() and 200 <= int(s) < 300)},
        duration_s=round(elapsed, 2),
        throughput_rps=round(total / elapsed, 1) if elapsed else 0.0,
        p50_ms=ms(50),
        p95_ms=ms(95),
        p99_ms=ms(99),
        max_ms=ms(100),
    )


def run_workers(
    users: int,
    duration: float,
    step: Callable[[int, int], str],
    think: float = 0.0,
    progress: Callable[[int, float], None] | None = None,
    max_requests: int | None = None,
) -> Summary:
    """Run `step(user, n) -> status` in `users` threads until `duration` passes (or `max_requests`)."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    counter = itertools.count()
    started = time.perf_counter()

    def user(index: int) -> None:
        for n in itertools.count():
            if stop.is_set() or (max_requests is not None and next(counter) >= max_requests):
                return
            t0 = time.perf_counter()
            try:
                status = step(index, n)
            except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
                status = type(exc).__name__
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                statuses[status] += 1
            if think:
                time.sleep(random.uniform(0.5, 1.5) * think)

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
    for t in threads:
        t.start()
    deadline = started + duration
    while any(t.is_alive() for t in threads) and time.perf_counter() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.perf_counter())))
        if progress:
            with lock:
                done = len(latencies)
            progress(done, time.perf_counter() - started)
    stop.set()
    for t in threads:
        t.join(30)
    with lock:
        return summarise(list(latencies), Counter(statuses), time.perf_counter() - started)


class HttpClient:
    """One keep-alive connection per user thread."""

    def __init__(self, base_url: str, headers: dict[str, str]):
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = headers
        self.local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            if self.https:
                context = ssl.create_default_context()
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self.local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def request(self, method: str, path: str, body: dict | None = None) -> str:
        conn = self._connection()
        payload = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, "Content-Type": "application/json"} if payload else self.headers
        try:
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            response = conn.getresponse()
            response.read()
            return str(response.status)
        except (OSError, http.client.HTTPException):
            conn.close()
            self.local.conn = None
            raise

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()


def search_step(
    client: HttpClient,
    queries: list[str],
    modes: list[str],
    limit: int = 20,
    ranking: str = "",
    pages: int = 1,
    tables: list[str] | None = None,
):
    """Each call searches the next query (each user starting at its own place) in the next mode, on one of
    the first `pages` pages at random."""
    extra = {**({"ranking": ranking} if ranking else {}), **({"tables": tables} if tables else {})}
    rng = random.Random(0)

    def step(user: int, n: int) -> str:
        query = queries[(user * 7919 + n) % len(queries)]
        mode = modes[(user + n) % len(modes)]
        body = {"query": query, "searchMode": mode, "limit": limit, **extra}
        if pages > 1:
            body["offset"] = limit * rng.randrange(pages)
        return client.request("POST", "/api/v1/search", body)

    return step
