"""The README's boolean examples are what the parser really does."""

import re
from pathlib import Path

from test_structured_search import shop  # noqa: F401 - the fixture

from altus4.search.boolean import parse_boolean

README = Path(__file__).resolve().parent.parent / "README.md"


def test_boolean_examples_in_readme():
    text = README.read_text()
    block = text.split("<!-- boolean-examples -->")[1].split("<!-- /boolean-examples -->")[0]
    rows = re.findall(r"^\| `(.+?)` \| `(.+?)` \|", block, flags=re.M)
    assert len(rows) >= 5
    for sent, received in rows:
        assert parse_boolean(sent).mysql == received, sent


def _snippet(name: str) -> str:
    block = README.read_text().split(f"<!-- {name} -->")[1].split(f"<!-- /{name} -->")[0]
    return block.split("```", 2)[1].split("\n", 1)[1]


def _tenant_search(client, token: str) -> list[int]:
    r = client.post(
        "/api/v1/search", json={"query": "wireless", "limit": 50}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.get_json()
    return [row["data"]["tenant_id"] for row in r.get_json()["data"]["results"]]


def test_the_tenant_token_examples_mint_working_tokens(client, settings, shop):  # noqa: F811
    """The README's Python and JavaScript snippets, run as they are, mint tokens the service accepts."""
    import shutil
    import subprocess

    from conftest import register
    from test_structured_search import SHOP_A

    owner = register(client)
    owner.connect_database(settings, SHOP_A)
    secret, key = owner.create_key(permissions=["search"])
    scope = {"KEY_ID": key["id"], "API_KEY": secret, "tenant": 2}
    exec(_snippet("tenant-token-python"), scope)  # noqa: S102 - the README's own example
    assert set(_tenant_search(client, scope["token"])) == {2}
    node = shutil.which("node")
    assert node, "node is installed by `make tools`"
    program = (
        f"const KEY_ID = {key['id']!r}; const API_KEY = {secret!r}; const tenant = 3;\n"
        + _snippet("tenant-token-javascript")
        + "\nconsole.log(token);"
    )
    token = subprocess.run(
        [node, "--input-type=module", "-e", program], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert set(_tenant_search(client, token)) == {3}
