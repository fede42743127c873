"""Authenticated encryption of connected-database passwords (AES-256-GCM).

The row id is bound in as associated data, so a ciphertext copied onto another
row does not decrypt. Stored form: `v1:` + base64(nonce || ciphertext+tag).
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "v1:"


class DecryptionError(ValueError):
    pass


class SecretBox:
    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return _PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str, context: str) -> str:
        if not stored.startswith(_PREFIX):
            raise DecryptionError("unknown ciphertext format")
        raw = base64.b64decode(stored[len(_PREFIX) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag as exc:
            raise DecryptionError("ciphertext does not match the key or the row") from exc
