"""/console: the web console, static files served by the app itself (no build step, nothing from a CDN).

The page talks only to the public API, with the user's JWT and an API key they choose. Every response here
carries a strict Content-Security-Policy: scripts and styles from this origin only, no inline code, no
framing, and fetches to this origin only. The few files are read once and served from memory: only names
that exist in the folder are served, so no path from a request reaches the filesystem.
"""

from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Response

from altus4.api.auth import public
from altus4.errors import NotFound

bp = Blueprint("console", __name__)
ASSETS = Path(__file__).resolve().parent.parent / "console"
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@lru_cache(maxsize=1)
def _files() -> dict[str, tuple[bytes, str]]:
    return {
        path.name: (path.read_bytes(), TYPES[path.suffix])
        for path in ASSETS.iterdir()
        if path.is_file() and path.suffix in TYPES
    }


def _serve(name: str, max_age: int) -> Response:
    found = _files().get(name)
    if found is None:
        raise NotFound("No such console file")
    body, kind = found
    response = Response(body, mimetype=kind)
    response.headers["Cache-Control"] = f"public, max-age={max_age}" if max_age else "no-cache"
    return response


@bp.get("/console")
@public
def page():
    return _serve("index.html", 0)


@bp.get("/favicon.ico")
@public
def favicon():
    """Browsers ask for it on every site, whatever the page links: the console's icon (SVG)."""
    return _serve("favicon.svg", 86400)


@bp.get("/console/<path:asset>")
@public
def asset(asset: str):
    """The console's scripts and styles."""
    return _serve(asset, 300)


@bp.after_request
def _harden(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response
