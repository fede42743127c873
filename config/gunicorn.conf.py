"""Gunicorn settings for Altus 4: gevent workers, sized from the machine, overridable by env.

Monkey-patching: gunicorn's gevent worker patches the standard library in each
worker before the app is imported (preload_app stays False), so PyMySQL and
redis-py sockets, DBUtils' locks and our pool semaphores are all cooperative.
"""

import multiprocessing
import os

from dotenv import load_dotenv

load_dotenv(override=False)  # the same .env the app reads; the environment wins
_cpus = multiprocessing.cpu_count()

bind = os.environ.get("BIND") or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '3000')}"
worker_class = "gevent"
# gevent workers are each asynchronous: one or two per core keeps the cores busy without oversubscribing them
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, _cpus)))
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# idle keep-alive: longer than the proxy's upstream keepalive_timeout (nginx 60 s) so the proxy closes first
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "1000"))
preload_app = False
control_socket_disable = True  # gunicorn 27 otherwise shares ~/.gunicorn/gunicorn.ctl between instances
proc_name = "altus4"

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# request id (echoed by the app) and latency in microseconds on every line
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(D)sus rid=%({x-request-id}o)s ua="%(a)s"'
