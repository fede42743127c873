"""gunicorn's response writer as `altus4.serving` patches it: a response's head goes out with its body in one
write, and every kind of response is still whole and in order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi

from altus4.serving import send_each_response_in_one_write


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


@pytest.fixture
def response_class(monkeypatch):
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)  # the patch below is undone after the test
    send_each_response_in_one_write()
    return wsgi.Response


def _respond(response_class, method: str, status: str, headers: list, chunks: list[bytes]) -> list[bytes]:
    sock = Recorder()
    request = SimpleNamespace(method=method, version=(1, 1), should_close=lambda: False, headers=[])
    response = response_class(request, sock, Config())
    response.start_response(status, headers)
    for chunk in chunks:
        response.write(chunk)
    response.close()
    return sock.writes


def test_head_and_body_go_in_one_write(response_class):
    writes = _respond(response_class, "GET", "200 OK", [("Content-Length", "5")], [b"hello"])
    assert len(writes) == 1
    head, _, body = writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 5" in head and body == b"hello"


def test_no_body_still_sends_the_head(response_class):
    for method, status in (("HEAD", "200 OK"), ("OPTIONS", "204 No Content"), ("GET", "304 Not Modified")):
        writes = _respond(response_class, method, status, [("Content-Length", "5")], [b"hello"])
        assert len(writes) == 1 and writes[0].endswith(b"\r\n\r\n"), (method, writes)


def test_a_streamed_body_is_chunked_after_the_head(response_class):
    writes = _respond(response_class, "GET", "200 OK", [], [b"ab", b"cde"])
    assert b"Transfer-Encoding: chunked" in writes[0] and writes[0].endswith(b"\r\n\r\n")
    assert b"".join(writes[1:]) == b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"


def test_files_go_through_the_same_write(response_class):
    assert response_class(SimpleNamespace(), Recorder(), Config()).can_sendfile() is False
