"""What lands in MySQL and in the logs: hashes and ciphertexts, never the secrets themselves."""

import logging

import pytest
from conftest import READER

from altus4.security.secrets_box import DecryptionError, SecretBox


def test_rows_hold_no_plaintext_secrets(user, settings, targets, db, caplog):
    caplog.set_level(logging.DEBUG)
    secret, key = user.create_key()
    conn = user.connect_database(settings, targets["a"])
    with db.cursor() as cur:
        cur.execute("SELECT * FROM users WHERE id = %s", (user.id,))
        user_row = cur.fetchone()
        cur.execute("SELECT * FROM api_keys WHERE id = %s", (key["id"],))
        key_row = cur.fetchone()
        cur.execute("SELECT * FROM database_connections WHERE id = %s", (conn["id"],))
        conn_row = cur.fetchone()
    assert user.password not in str(user_row)
    assert user_row["password_hash"].startswith("scrypt:")
    assert secret not in str(key_row) and secret[-36:] not in str(key_row)
    assert len(key_row["key_hash"]) == 64
    assert READER[1] not in str(conn_row)
    assert conn_row["password_encrypted"].startswith("v1:")
    for secret_text in (secret, READER[1], user.password):
        assert secret_text not in caplog.text


def test_ciphertext_is_bound_to_its_row_and_key(settings):
    box = SecretBox(settings.encryption_key)
    sealed = box.encrypt("hunter2", "row-1")
    assert box.decrypt(sealed, "row-1") == "hunter2"
    assert box.encrypt("hunter2", "row-1") != sealed  # fresh nonce every time
    with pytest.raises(DecryptionError):
        box.decrypt(sealed, "row-2")
    with pytest.raises(DecryptionError):
        SecretBox(b"\x01" * 32).decrypt(sealed, "row-1")


def test_password_is_never_returned_on_any_read_path(user, settings, targets):
    conn = user.connect_database(settings, targets["a"])
    responses = [
        user.call("GET", "/api/v1/databases"),
        user.call("GET", f"/api/v1/databases/{conn['id']}"),
        user.call("PUT", f"/api/v1/databases/{conn['id']}", json={"name": "renamed"}),
        user.call("POST", f"/api/v1/databases/{conn['id']}/test"),
    ]
    for r in responses:
        assert r.status_code == 200
        assert READER[1] not in r.get_data(as_text=True)
