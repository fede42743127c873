"""The README's boolean examples are what the parser really does."""

import re
from pathlib import Path

from altus4.search.boolean import parse_boolean

README = Path(__file__).resolve().parent.parent / "README.md"


def test_boolean_examples_in_readme():
    text = README.read_text()
    block = text.split("<!-- boolean-examples -->")[1].split("<!-- /boolean-examples -->")[0]
    rows = re.findall(r"^\| `(.+?)` \| `(.+?)` \|", block, flags=re.M)
    assert len(rows) >= 5
    for sent, received in rows:
        assert parse_boolean(sent).mysql == received, sent
