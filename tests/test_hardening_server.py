"""F: what gunicorn and Flask answer before a view runs is in the envelope too (or has no body at all)."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import env_for_tests
from servers import call, start_gunicorn


@pytest.fixture(scope="module")
def server(migrated, tmp_path_factory):
    gunicorn = start_gunicorn(env_for_tests(), tmp_path_factory.mktemp("gunicorn-hardening"), workers=1)
    yield gunicorn
    gunicorn.stop()


def _raw(port: int, head: bytes, body_chunks: list[bytes] = (), timeout: float = 10) -> tuple[int, dict, bytes]:
    """Send bytes as they are (no client library fixing them up); the status, headers and body back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before it read everything: what it said is still to be read
        data = b""
        while True:
            try:
                part = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data:
                header_block, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(h.split(b":")[1])
                        for h in header_block.split(b"\r\n")
                        if h.lower().startswith(b"content-length")
                    ),
                    None,
                )
                if length is not None and len(rest) >= length:
                    break
    header_block, _, body = data.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _envelope(body: bytes) -> dict:
    parsed = json.loads(body)
    assert parsed["success"] is False and parsed["error"]["code"] and parsed["error"]["message"], parsed
    return parsed["error"]


def test_a_request_line_over_gunicorns_limit_is_a_414_envelope(server):
    status, headers, body = _raw(server.port, b"GET /api/v1/search?q=" + b"x" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 414 and headers["content-type"] == "application/json"
    assert _envelope(body)["code"] == "URI_TOO_LONG"


def test_too_large_headers_are_a_431_envelope(server):
    huge = b"X-Big: " + b"y" * 9000 + b"\r\n"
    status, headers, body = _raw(server.port, b"GET /health HTTP/1.1\r\nHost: t\r\n" + huge + b"\r\n")
    assert status in (400, 431) and headers["content-type"] == "application/json"
    assert _envelope(body)["code"] in ("HEADERS_TOO_LARGE", "BAD_REQUEST")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(120))
    status, headers, body = _raw(server.port, b"GET /health HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n")
    assert status == 431 and _envelope(body)["code"] == "HEADERS_TOO_LARGE"


def test_a_malformed_request_line_is_a_400_envelope(server):
    status, headers, body = _raw(server.port, b"GET\x00 / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/json"
    assert _envelope(body)["code"] == "BAD_REQUEST"


def test_options_is_a_204_with_allow(server):
    for path in ("/api/v1/search", "/api/v1/keys", "/health"):
        status, _, headers = call(server.url + path, "OPTIONS")
        assert status == 204, path
        assert "OPTIONS" in headers["Allow"] and "Content-Type" not in headers, headers


def test_a_chunked_body_over_the_limit_is_a_413(server):
    chunk = b"a" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(32)] + [b"0\r\n\r\n"]  # 2 MiB
    head = (
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    status, headers, body = _raw(server.port, head, chunks)
    assert status == 413, body
    assert _envelope(body)["code"] == "PAYLOAD_TOO_LARGE"
