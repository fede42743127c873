"""Times as the metadata database stores them: naive DATETIMEs holding UTC, shown as ISO-8601 with a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """DATETIME columns hold UTC; render them as ISO-8601 with a Z."""
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


def naive_utc(value: datetime | None) -> datetime | None:
    """An aware datetime as the naive UTC a DATETIME column stores (naive ones are taken as UTC already)."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)
