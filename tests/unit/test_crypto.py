import pytest

from veo.crypto import Box, is_envelope
from veo.errors import CryptoError

SECRET = "s" * 40


def test_round_trip_and_versioned_format() -> None:
    box = Box(SECRET)
    env = box.encrypt(b"AIza-some-key", "api_key")
    assert env.startswith("v1.") and is_envelope(env)
    assert b"AIza" not in env.encode()
    assert box.decrypt(env, "api_key") == b"AIza-some-key"
    assert box.encrypt(b"x", "p") != box.encrypt(b"x", "p")  # fresh nonce each time


def test_tampering_is_detected() -> None:
    box = Box(SECRET)
    env = box.encrypt(b"payload", "api_key")
    version, nonce, sealed = env.split(".")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(CryptoError):
        box.decrypt(f"{version}.{nonce}.{flipped}", "api_key")


def test_wrong_purpose_or_secret_or_version_fails() -> None:
    box = Box(SECRET)
    env = box.encrypt(b"payload", "api_key")
    with pytest.raises(CryptoError):
        box.decrypt(env, "flow_state")
    with pytest.raises(CryptoError):
        Box("t" * 40).decrypt(env, "api_key")
    with pytest.raises(CryptoError, match="version"):
        box.decrypt("v9" + env[2:], "api_key")
    with pytest.raises(CryptoError):
        box.decrypt("garbage", "api_key")


def test_webhook_secret_is_stable_per_user() -> None:
    box = Box(SECRET)
    assert box.webhook_secret("u1") == Box(SECRET).webhook_secret("u1")
    assert box.webhook_secret("u1") != box.webhook_secret("u2")
    assert box.webhook_secret("u1").startswith("whsec_")
