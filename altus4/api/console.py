"""/console: the web console, static files served by the app itself (no build step, nothing from a CDN).

The page talks only to the public API, with the user's JWT and an API key they choose. Every response here
carries a strict Content-Security-Policy: scripts and styles from this origin only, no inline code, no
framing, and fetches to this origin only.
"""

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from altus4.api.auth import public

bp = Blueprint("console", __name__)
ASSETS = Path(__file__).resolve().parent.parent / "console"
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/console")
@public
def page():
    return send_from_directory(ASSETS, "index.html", max_age=0)


@bp.get("/console/<path:asset>")
@public
def asset(asset: str):
    """The console's scripts and styles (send_from_directory refuses paths outside the folder: 404)."""
    return send_from_directory(ASSETS, asset, max_age=300)


@bp.after_request
def _harden(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response
