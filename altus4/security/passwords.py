"""Slow, salted password hashes (scrypt via werkzeug: memory-hard, no extra dependency)."""

from werkzeug.security import check_password_hash, generate_password_hash

# A fixed hash to compare against when the e-mail is unknown, so login takes
# the same time whether or not the account exists.
_DUMMY = generate_password_hash("altus4-timing-equaliser", method="scrypt")


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def verify_password(password_hash: str | None, password: str) -> bool:
    return check_password_hash(password_hash or _DUMMY, password) and password_hash is not None
