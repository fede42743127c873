"""The service's own OpenAPI document (`altus4/openapi.yaml`), served as JSON with the running version."""

from functools import lru_cache
from pathlib import Path

import yaml
from flask import Blueprint, current_app, jsonify

from altus4.api.auth import public

bp = Blueprint("docs", __name__)
SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


@lru_cache(maxsize=1)
def load_spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


@bp.get("/api/v1/openapi.json")
@public
def openapi():
    spec = dict(load_spec())
    spec["info"] = {**spec["info"], "version": current_app.config["ALTUS4_VERSION"]}
    return jsonify(spec)
