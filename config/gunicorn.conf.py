"""Gunicorn settings for Altus 4: gevent workers, sized from the machine, overridable by env.

Monkey-patching: gunicorn's gevent worker patches the standard library in each
worker before the app is imported (preload_app stays False), so PyMySQL and
redis-py sockets, DBUtils' locks and our pool semaphores are all cooperative.

Metrics: every worker writes Prometheus samples into PROMETHEUS_MULTIPROC_DIR;
/metrics on any worker merges them; a dead worker's live gauges are dropped
when it exits. Unless it is set, each gunicorn master gets a directory named
after its pid (made at start, removed at exit), so several instances on one
host, however they are bound (`-b` included), never share or wipe one.
"""

import gc
import glob
import multiprocessing
import os
import shutil
import tempfile

from dotenv import load_dotenv

from altus4.config import read_int, read_str
from altus4.gunicorn_worker import GuardedGeventWorker
from altus4.serving import answer_gunicorn_errors_in_the_envelope, send_each_response_in_one_write

load_dotenv(override=False)  # the same .env the app reads; the environment wins
answer_gunicorn_errors_in_the_envelope()  # its 414/431/400 pages become JSON envelopes (workers inherit it)
send_each_response_in_one_write()  # head and body in one sendall (workers inherit it)
_env = os.environ
_cpus = multiprocessing.cpu_count()

# the same parsers as the app's settings: a bad value stops gunicorn with the variable named
bind = read_str(_env, "BIND", f"{read_str(_env, 'HOST', '127.0.0.1')}:{read_int(_env, 'PORT', 3000, 1, 65535)}")
_METRICS_PREFIX = os.path.join(tempfile.gettempdir(), "altus4-metrics-")
# gevent's worker with a deadline on request heads and a bound on waiting connections (slow clients)
worker_class = "altus4.gunicorn_worker.GuardedGeventWorker"
# gevent workers are each asynchronous: one or two per core keeps the cores busy without oversubscribing them
workers = read_int(_env, "WEB_CONCURRENCY", max(2, _cpus), 1, 1024)
worker_connections = read_int(_env, "WORKER_CONNECTIONS", 1000, 1)
# a new connection's first request head must arrive within this many seconds; at most this many connections
# per worker wait for a request head at once (one more closes the longest waiting): altus4/gunicorn_worker.py
GuardedGeventWorker.header_timeout = read_int(_env, "GUNICORN_HEADER_TIMEOUT", 10, 1, 3600)
GuardedGeventWorker.max_waiting = read_int(_env, "GUNICORN_MAX_WAITING", max(1, worker_connections // 2), 1)
timeout = read_int(_env, "GUNICORN_TIMEOUT", 30, 0)
graceful_timeout = read_int(_env, "GUNICORN_GRACEFUL_TIMEOUT", 30, 0)
# idle keep-alive: longer than the proxy's upstream keepalive_timeout (nginx 60 s) so the proxy closes first
keepalive = read_int(_env, "GUNICORN_KEEPALIVE", 75, 0)
# Worker recycling is off by default. A recycling gevent worker stops accepting, then waits up to
# graceful_timeout for its open keep-alive connections (nginx keeps 64 idle ones per nginx worker), and
# the master replaces it only when it exits: measured, two workers recycling together stalled every
# client for 30 s (bench/run.py's /health run). Turn it on only against a leak, with a short keepalive.
max_requests = read_int(_env, "GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = read_int(_env, "GUNICORN_MAX_REQUESTS_JITTER", 0)
preload_app = False
control_socket_disable = True  # gunicorn 27 otherwise shares ~/.gunicorn/gunicorn.ctl between instances
proc_name = "altus4"

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = read_str(_env, "LOG_LEVEL", "info").lower()
# request id (echoed by the app) and latency in microseconds on every line
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(D)sus rid=%({x-request-id}o)s ua="%(a)s"'


def on_starting(server):
    """A fresh metrics directory per start (files of an earlier run would be summed into the totals), set
    before any worker imports prometheus_client, which picks its storage when first imported."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        for stale in glob.glob(_METRICS_PREFIX + "*"):  # left by masters that did not exit cleanly
            pid = stale[len(_METRICS_PREFIX) :]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = f"{_METRICS_PREFIX}{os.getpid()}"
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def on_exit(server):
    if os.environ["PROMETHEUS_MULTIPROC_DIR"] == f"{_METRICS_PREFIX}{os.getpid()}":
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def post_worker_init(worker):
    """Everything the worker holds once the app is loaded (modules, the app, its services) moves out of the
    collector's reach: it lives as long as the worker. Measured under cached-search load, a full collection
    walked it all and stopped the worker, every one of its connections, for 107-214 ms every 9-26 s;
    frozen, full collections took 5-25 ms (docs/performance.md)."""
    gc.freeze()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
