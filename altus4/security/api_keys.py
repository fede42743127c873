"""API key secrets: `altus4_sk_{test|live}_<40 base62 chars>` (~238 bits).

Only a SHA-256 of the whole key is looked up; with that much entropy a slow hash
buys nothing and would cost every request. The secret itself is also kept, encrypted
(`sealing_context`), because tenant tokens are signed with it. The stored, displayable prefix
carries 4 characters (~24 bits) of the random part: enough to tell keys apart
in a list, far too little to help guess one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 40
PREFIX_SECRET_CHARS = 4
KEY_PATTERN = re.compile(rf"^altus4_sk_(test|live)_[A-Za-z0-9]{{{SECRET_LENGTH}}}$")


def generate(environment: str) -> str:
    return f"altus4_sk_{environment}_" + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))


def looks_like_key(candidate: str) -> bool:
    return bool(KEY_PATTERN.match(candidate))


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    head, _, secret = key.rpartition("_")
    return f"{head}_{secret[:PREFIX_SECRET_CHARS]}"


def sealing_context(key_id: str) -> str:
    """The associated data a key's encrypted secret is bound to: copied onto another key, it does not open."""
    return f"api_key:{key_id}"
