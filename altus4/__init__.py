"""Altus 4: MySQL full-text search as an API, without moving the data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from altus4.config import VERSION as __version__

if TYPE_CHECKING:
    from flask import Flask

    from altus4.config import Settings

__all__ = ["__version__", "create_app"]


def create_app(settings: Settings | None = None) -> Flask:
    """Build an app from `settings` (default: the environment); see `altus4.factory`."""
    from altus4.factory import create_app as build

    return build(settings)
