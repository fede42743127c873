"""Configuration: parsed once, bad values fail fast with the variable named."""

import pytest

from altus4.config import ConfigError, Limit, Settings, parse_encryption_key, parse_limits

PROD = {"JWT_SECRET": "j" * 40, "ENCRYPTION_KEY": "ab" * 32}


def test_production_requires_secrets():
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        Settings.from_env({"ENCRYPTION_KEY": "ab" * 32})
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY"):
        Settings.from_env({"JWT_SECRET": "j" * 40})
    settings = Settings.from_env(PROD)
    assert settings.env == "production" and not settings.development


def test_development_has_defaults():
    settings = Settings.from_env({"APP_ENV": "development"})
    assert settings.development and len(settings.encryption_key) == 32


def test_node_env_is_honoured():
    assert Settings.from_env({"NODE_ENV": "development"}).development


@pytest.mark.parametrize(
    "name,value",
    [
        ("DB_PORT", "-1"),
        ("DB_PORT", "70000"),
        ("REDIS_PORT", "x"),
        ("JWT_SECRET", "short"),
        ("ENCRYPTION_KEY", "too-short"),
        ("JWT_EXPIRES_IN", "forever"),
        ("DB_READ_HOSTS", "replica-without-port"),
        ("ALLOWED_DATABASE_HOSTS", "10.0.0.0/33"),
        ("APP_ENV", "staging"),
        ("DB_POOL_TIMEOUT", "soon"),
        ("AUTH_RATE_LIMIT", "ten per minute"),
        ("USER_RATE_LIMIT", "5 per fortnight"),
        ("SEMANTIC_QUERY_EXPANSION", "maybe"),
    ],
)
def test_bad_values_name_the_setting(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**PROD, name: value})


def test_values_are_parsed():
    s = Settings.from_env(
        {
            **PROD,
            "USER_RATE_LIMIT": "5/second",
            "JWT_EXPIRES_IN": "7d",
            "DB_READ_HOSTS": "r1:3307, r2:3308",
            "ALLOWED_DATABASE_HOSTS": "10.0.0.0/8,*.db.internal",
            "REDIS_PASSWORD": "pw",
        }
    )
    assert s.user_rate_limit == (Limit(5, 1),) and s.jwt_expires_in == 7 * 86400
    assert s.db_read_hosts == (("r1", 3307), ("r2", 3308))
    assert s.allowed_database_hosts == ("10.0.0.0/8", "*.db.internal")
    assert s.redis_url == "redis://:pw@127.0.0.1:6379/0"


def test_encryption_key_forms():
    hex_key = parse_encryption_key("00" * 32)
    assert hex_key == bytes(32)
    import base64

    assert parse_encryption_key(base64.b64encode(b"k" * 32).decode()) == b"k" * 32
    assert len(parse_encryption_key("a passphrase that is long enough!!")) == 32


def test_settings_repr_hides_secrets():
    s = Settings.from_env(
        {**PROD, "OPENAI_API_KEY": "sk-very-secret", "DB_PASSWORD": "db-pw-1", "REDIS_PASSWORD": "r-pw-1"}
    )
    text = repr(s)
    for secret in ("sk-very-secret", "abab", "j" * 40, "db-pw-1", "r-pw-1"):
        assert secret not in text


def test_rate_limit_strings():
    assert parse_limits("10 per minute;100/hour") == (Limit(10, 60), Limit(100, 3600))
    for bad in ("", "ten per minute", "5 per fortnight", "0 per second"):
        with pytest.raises(ConfigError):
            parse_limits(bad)


def test_every_default_is_the_one_from_env_gives():
    """Defaults are written once, on the field: a Settings() and an empty environment agree."""
    from dataclasses import replace

    parsed = Settings.from_env({"APP_ENV": "development"})
    assert replace(parsed, db_pool_size=Settings().db_pool_size) == replace(Settings(), env="development")


def test_gunicorn_config_uses_the_same_parsers(monkeypatch, tmp_path):
    import runpy
    from pathlib import Path

    # the config sets this for the process it runs in: set (and so undone) here, not leaked to later tests
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    conf = str(Path(__file__).resolve().parent.parent / "config" / "gunicorn.conf.py")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert runpy.run_path(conf)["workers"] == 3
    monkeypatch.setenv("WEB_CONCURRENCY", "many")
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY"):
        runpy.run_path(conf)


def test_secrets_from_files(tmp_path):
    (tmp_path / "jwt").write_text("f" * 40 + "\n")
    (tmp_path / "key").write_text("ab" * 32)
    s = Settings.from_env({"JWT_SECRET_FILE": str(tmp_path / "jwt"), "ENCRYPTION_KEY_FILE": str(tmp_path / "key")})
    assert s.jwt_secret == "f" * 40 and s.encryption_key == bytes.fromhex("ab" * 32)
    with pytest.raises(ConfigError, match="JWT_SECRET_FILE"):
        Settings.from_env({**PROD, "JWT_SECRET": "", "JWT_SECRET_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="not both"):
        Settings.from_env({**PROD, "JWT_SECRET_FILE": str(tmp_path / "jwt")})


def test_db_host_lists_a_galera_cluster_in_order_of_preference():
    """One host stays one server; a list is the cluster's nodes, each port defaulting to DB_PORT."""
    assert Settings.from_env({**PROD, "DB_HOST": "db.example.com", "DB_PORT": "3307"}).db_nodes == (
        ("db.example.com", 3307),
    )
    settings = Settings.from_env({**PROD, "DB_HOST": "db1, db2:3310,[fd00::3]:3311,[fd00::4]", "DB_PORT": "3307"})
    assert settings.db_nodes == (("db1", 3307), ("db2", 3310), ("fd00::3", 3311), ("fd00::4", 3307))
    assert Settings.from_env({**PROD, "DB_HOST": "::1"}).db_nodes == (("::1", 3306),)  # a bare IPv6 address
    for bad in ("db1,,db2", "db1:99999", "db1:x", ":3306"):
        with pytest.raises(ConfigError, match="DB_HOST"):
            Settings.from_env({**PROD, "DB_HOST": bad})
