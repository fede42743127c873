"""Where the original Altus 4's contract and SDK are (read-only, third-party): `ALTUS4_REFERENCE`, or the
workplace's shared reference folder beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

_CANDIDATES = [
    os.environ.get("ALTUS4_REFERENCE", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "reference"),
    "/work/shared/reference",
]


def reference_dir() -> Path:
    for candidate in _CANDIDATES:
        if candidate and (Path(candidate) / "altus4-openapi.yaml").is_file():
            return Path(candidate)
    raise RuntimeError(f"the original Altus 4 reference is not found (set ALTUS4_REFERENCE); looked in {_CANDIDATES}")


def original_spec() -> dict:
    return yaml.safe_load((reference_dir() / "altus4-openapi.yaml").read_text())


def sdk_source() -> Path:
    return reference_dir() / "altus4-sdk-js"
