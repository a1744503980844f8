import pytest

from veo import config
from veo.errors import ConfigError

SECRET = "x" * 40
FAKE_KEY = "AI" + "zaSyA-secret-key-000000000000"  # split: a fake, not a leaked key


def test_defaults_match_spec() -> None:
    s = config.load({"VEO_SECRET_KEY": SECRET})
    assert s.database_url == "postgresql://localhost/veo"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.storage_backend == "local" and s.storage_dir == "./data"
    assert s.default_model == "gemini-omni-1.1-flash" and s.models_file is None
    # real Flow refuses headless browsers: headed (under Xvfb) is the default
    assert s.flow_enabled and not s.flow_headless and s.flow_max_concurrent == 1
    assert s.flow_base_url == "https://flow.google.com/" and s.flow_canary_minutes == 60
    assert s.flow_storage_state_key == "flow/auth/default/storage_state.json"
    assert s.flow_job_timeout == 600 and (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.log_format == "json" and s.s3_region == "auto"


def test_missing_secret_names_variable() -> None:
    with pytest.raises(ConfigError, match="VEO_SECRET_KEY"):
        config.load({})


def test_short_secret_refused() -> None:
    with pytest.raises(ConfigError, match="VEO_SECRET_KEY"):
        config.load({"VEO_SECRET_KEY": "short"})


def test_sandbox_generates_and_shares_a_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"VEO_SANDBOX": "1", "STORAGE_DIR": str(tmp_path), "PORT": "9100"}
    s = config.load(env)
    assert len(s.secret_key) >= 32
    assert config.load(env).secret_key == s.secret_key  # the worker gets the same one
    assert (tmp_path / ".sandbox-secret").stat().st_mode & 0o777 == 0o600
    assert s.gemini_base_url == "http://127.0.0.1:9101"
    assert s.flow_base_url == "http://127.0.0.1:9102/"


def test_keyvalue_url_alias_and_precedence() -> None:
    assert config.load({"VEO_SECRET_KEY": SECRET, "KEYVALUE_URL": "redis://kv:1/2"}).redis_url \
        == "redis://kv:1/2"
    assert config.load({"VEO_SECRET_KEY": SECRET, "KEYVALUE_URL": "redis://kv:1/2",
                        "REDIS_URL": "redis://r:1/0"}).redis_url == "redis://r:1/0"


@pytest.mark.parametrize(("var", "value"), [
    ("FLOW_MAX_CONCURRENT", "0"), ("FLOW_MAX_CONCURRENT", "two"), ("PORT", "x"),
    ("FLOW_HEADLESS", "maybe"), ("LOG_FORMAT", "xml"), ("GEMINI_BASE_URL", "ftp://x"),
    ("FLOW_JOB_TIMEOUT", "-1"), ("FLOW_ACCOUNT", "../etc"),
])
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        config.load({"VEO_SECRET_KEY": SECRET, var: value})


def test_account_selects_state_key_and_pool_parsed() -> None:
    s = config.load({"VEO_SECRET_KEY": SECRET, "FLOW_ACCOUNT": "team-b",
                     "GEMINI_API_KEYS": " k1-aaaaaaaa , ,k2-bbbbbbbb"})
    assert s.flow_storage_state_key == "flow/auth/team-b/storage_state.json"
    assert list(s.gemini_api_keys) == ["k1-aaaaaaaa", "k2-bbbbbbbb"]


def test_s3_bucket_needs_credentials() -> None:
    with pytest.raises(ConfigError, match="S3_ACCESS_KEY"):
        config.load({"VEO_SECRET_KEY": SECRET, "S3_BUCKET": "b"})


def test_repr_hides_secrets() -> None:
    s = config.load({"VEO_SECRET_KEY": SECRET, "VEO_ADMIN_TOKEN": "admintoken123",
                     "GEMINI_API_KEYS": FAKE_KEY,
                     "S3_BUCKET": "b", "S3_ACCESS_KEY": "AKIAXXXX", "S3_SECRET_KEY": "s3secret99",
                     "DATABASE_URL": "postgresql://u:pgpass@h/db"})
    text = repr(s) + str(s)
    for secret in (SECRET, "admintoken123", "AIzaSyA-secret", "AKIAXXXX", "s3secret99", "pgpass"):
        assert secret not in text
