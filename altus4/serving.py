"""How the WSGI app shares a gunicorn gevent worker: each request waits its turn.

A greenlet whose client sends its next request at once on a keep-alive connection can be served again and
again before greenlets that waited longer get the CPU: with wrk at 16 connections, GET /health had p50
0.6 ms but p99 116 ms. One `sleep(0)` (gevent's, once patched; a turn of the GIL under threads) sends each
request to the back of the run queue: p99 ~12 ms on a bare WSGI app with the same throughput, and 25 ms
instead of 116 ms for /health (README, Performance).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime


def take_turns(wsgi_app):
    def wsgi(environ, start_response):
        time.sleep(0)
        return wsgi_app(environ, start_response)

    return wsgi


# gunicorn answers requests it cannot parse (a request line over limit_request_line, too many or too large
# headers, a bad chunk) itself, before the app sees them; these are its statuses in our codes
_GUNICORN_CODES = {
    400: "BAD_REQUEST",
    403: "FORBIDDEN",
    414: "URI_TOO_LONG",
    417: "EXPECTATION_FAILED",
    431: "HEADERS_TOO_LARGE",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
}


def error_envelope(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 response in the API's error envelope, for gunicorn's own refusals."""
    body = json.dumps(
        {
            "success": False,
            "error": {"code": _GUNICORN_CODES.get(status, "BAD_REQUEST"), "message": message or reason},
            "meta": {
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "requestId": str(uuid.uuid4()),
            },
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def answer_gunicorn_errors_in_the_envelope() -> None:
    """Make gunicorn write its parse and limit errors (414, 431, 400...) as JSON envelopes, not HTML pages.

    Called from `config/gunicorn.conf.py`; gunicorn's limits themselves stay as they are.
    """
    from gunicorn import util

    def write_error(sock, status_int, reason, mesg):
        util.write_nonblock(sock, error_envelope(int(status_int), reason, mesg))

    util.write_error = write_error


def send_each_response_in_one_write() -> None:
    """Make gunicorn send a response's head with its first body bytes: it wrote them with two `sendall`s, two
    system calls and, under gevent, two trips through the hub for every response (py-spy, cached search:
    `SocketMixin.send` was the largest single line). Called from `config/gunicorn.conf.py`. Files go through
    the same write, not `sendfile` (which writes beside it): the console's few small static files."""
    from gunicorn import util
    from gunicorn.http import wsgi

    class OneWriteResponse(wsgi.Response):
        _head = b""
        headers_sent: bool  # gunicorn's, set in its __init__

        def can_sendfile(self) -> bool:
            return False

        def send_headers(self) -> None:
            if self.headers_sent:
                return
            lines = self.default_headers()
            lines.extend(f"{k}: {v}\r\n" for k, v in self.headers)
            self._head = util.to_bytestring("".join(lines) + "\r\n", "latin-1")
            self.headers_sent = True

        def _emit_body(self, data: bytes) -> None:
            head, self._head = self._head, b""
            if head and not self.chunked:
                util.write(self.sock, head + data)
                return
            if head:
                util.write(self.sock, head)
            util.write(self.sock, data, self.chunked)

        def close(self) -> None:
            self.send_headers()
            head, self._head = self._head, b""
            if head:  # no body (HEAD, 204, 304, an empty one)
                util.write(self.sock, head)
            super().close()

    wsgi.Response = OneWriteResponse
