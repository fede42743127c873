"""What every MySQL connection and statement of ours shares: client options, LIKE escaping, SET clauses."""

from __future__ import annotations

from typing import Any

from pymysql.cursors import DictCursor


def client_options(
    host: str,
    port: int,
    user: str,
    password: str,
    database: str | None,
    connect_timeout: float,
    read_timeout: float = 30,
) -> dict[str, Any]:
    """PyMySQL arguments: utf8mb4, dict rows, autocommit (a write opens its own transaction), explicit time-outs."""
    options: dict[str, Any] = dict(
        host=host,
        port=port,
        user=user,
        password=password,
        charset="utf8mb4",
        cursorclass=DictCursor,
        autocommit=True,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        write_timeout=30,
    )
    if database:
        options["database"] = database
    return options


def escape_like(text: str) -> str:
    """`text` matched literally inside a LIKE pattern (its `%`, `_` and `\\` escaped)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def set_clause(values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """`col = %s, col = %s` and its parameters, for an UPDATE whose column names come from our code only."""
    return ", ".join(f"{column} = %s" for column in values), tuple(values.values())
