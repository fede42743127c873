"""Whose work is running now: the scope the metadata database reads for read-your-writes.

The API layer opens one `Scope` per request (`altus4.api.envelope`) and names its subject where the
identity becomes known: the auth decorators for signed-in and API-key requests, register and login for the
account they create or sign in. Code outside a request (the CLI, write-behind flushes, jobs) runs with no
scope: its reads take any healthy replica and its writes leave no position behind.

A `contextvars` value rather than Flask's `g`, so that `altus4.db` does not depend on the web framework:
each gevent greenlet (one per request under gunicorn) has its own context, as each thread has.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass
class Scope:
    subject: str | None = None  # the user this work is done for: their writes are remembered for their reads
    wrote: bool = False  # after a write, this scope reads from the primary
    position: str | None = None  # the primary's GTID position after this scope's last write, not yet published
    awaited: tuple[str, str | None] | None = None  # (subject, position its reads wait for), looked up once


_current: ContextVar[Scope | None] = ContextVar("altus4_scope", default=None)


def current() -> Scope | None:
    return _current.get()


def open_scope() -> Token[Scope | None]:
    """Start a fresh scope; hand the token to `close_scope` when the work ends."""
    return _current.set(Scope())


def close_scope(token: Token[Scope | None]) -> None:
    _current.reset(token)


def bind(subject: str) -> None:
    """Name the user the current scope acts for (no-op outside a scope)."""
    active = _current.get()
    if active is not None:
        active.subject = subject
