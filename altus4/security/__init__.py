"""Cryptography in one place: password hashes, JWTs, API key secrets, credential encryption."""
