"""The official TypeScript SDK (@altus4/sdk 0.2.0), built from its source with npm, drives a real Altus 4
(gunicorn, MariaDB, Redis): every SDK method, and search with an API key through the SDK's HTTP client."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import READER, TARGET_A, env_for_tests
from reference import sdk_source
from servers import start_gunicorn

pytestmark = pytest.mark.slow  # npm install and a build: about 20 s

SCRIPT = Path(__file__).resolve().parent / "sdk" / "check_sdk.js"


def _npm(args: list[str], cwd: Path) -> None:
    done = subprocess.run(["npm", *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"npm {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def sdk(tmp_path_factory) -> Path:
    """The SDK's source copied somewhere writable and built as its README says."""
    where = tmp_path_factory.mktemp("sdk") / "altus4-sdk-js"
    shutil.copytree(sdk_source(), where, ignore=shutil.ignore_patterns("node_modules", "dist"))
    for path in where.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    package = json.loads((where / "package.json").read_text())
    # `formlink` is no longer on the npm registry and nothing in the SDK's code imports it: build without it
    assert not any("formlink" in p.read_text() for p in (where / "src").rglob("*.ts"))
    del package["dependencies"]["formlink"]
    (where / "package.json").write_text(json.dumps(package, indent=2))
    _npm(["install", "--ignore-scripts", "--no-audit", "--no-fund"], where)
    _npm(["run", "build"], where)
    return where


def test_every_sdk_method_works_against_altus4(sdk, migrated, targets, tmp_path):
    server = start_gunicorn(env_for_tests(), tmp_path, workers=2)
    connection = {
        "name": "sdk shop",
        "host": migrated.db_host,
        "port": migrated.db_port,
        "database": TARGET_A,
        "username": READER[0],
        "password": READER[1],
    }
    try:
        done = subprocess.run(
            ["node", str(SCRIPT), str(sdk), server.url, json.dumps(connection)],
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        server.stop()
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("ok") is False]
    assert done.returncode == 0 and not failed, (failed, done.stderr[-3000:])
    assert lines[-1] == {"failures": []}
    called = {line["name"] for line in lines if "name" in line}
    assert len(called) >= 45, sorted(called)  # every method the SDK has, and the search calls
