"""Redaction is checked on real rendered output, not on the processor alone."""

import json

import pytest
import structlog

from veo import logs

FAKE_KEY = "AI" + "zaSyD-abcdefghijklmnopqrstuvwxyz12"  # split: a fake, not a leaked key


@pytest.fixture
def rendered(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    logs.configure("json")

    def read() -> list[dict]:  # type: ignore[type-arg]
        out = capsys.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    yield read
    structlog.reset_defaults()


def test_secrets_are_masked_everywhere(rendered) -> None:  # type: ignore[no-untyped-def]
    log = structlog.get_logger()
    logs.register_secret("plain-operator-key-without-shape")
    log.info(
        "job.created",
        job_id="job_1",
        api_key=FAKE_KEY,
        headers={"Authorization": "Bearer veo_abcdefghijklmnopqrstuv", "x-goog-api-key": "k"},
        message=f"403 Consumer 'api_key:{FAKE_KEY}' has been suspended",
        url="https://bucket.r2.dev/outputs/j/0-0.mp4?X-Amz-Algorithm=AWS4&X-Amz-Signature=abc",
        cookies=[{"name": "SID", "value": "cookie-value"}],
        storage_state={"cookies": []},
        nested={"deep": ["uses plain-operator-key-without-shape here"]},
    )
    (event,) = rendered()
    text = json.dumps(event)
    for leaked in ("AIzaSyD", "veo_abcdef", "X-Amz-Signature", "cookie-value",
                   "plain-operator-key-without-shape"):
        assert leaked not in text
    assert event["event"] == "job.created" and event["job_id"] == "job_1"
    assert event["url"].startswith("https://bucket.r2.dev/outputs/j/0-0.mp4")
    assert event["level"] == "info" and event["timestamp"].endswith("Z")


def test_exceptions_are_redacted(rendered) -> None:  # type: ignore[no-untyped-def]
    log = structlog.get_logger()
    try:
        raise RuntimeError(f"bad key {FAKE_KEY}")
    except RuntimeError:
        log.exception("job.failed")
    (event,) = rendered()
    assert "AIzaSyD" not in json.dumps(event)
    assert "RuntimeError" in event["exception"]


def test_stdlib_logging_goes_through_redaction(rendered) -> None:  # type: ignore[no-untyped-def]
    import logging

    logging.getLogger("arq.worker").warning("token Bearer abc.def.ghi seen")
    (event,) = rendered()
    assert "abc.def.ghi" not in json.dumps(event)


def test_registered_secrets_found_by_token_whatever_their_number() -> None:
    import uuid

    from veo.logs import MASK, redact_text, register_secret

    odd = "opaque-" + uuid.uuid4().hex  # no known shape: only registration finds it
    register_secret(odd)
    text = f"Consumer 'api_key:{odd}' suspended; key={odd}&x. see {odd}."
    assert odd not in redact_text(text) and redact_text(text).count(MASK) == 3
    aq = "A" + "Q." + uuid.uuid4().hex + uuid.uuid4().hex  # the newer key shape, unregistered
    classic = "AI" + "za" + uuid.uuid4().hex
    assert aq not in redact_text(f"bad key {aq}") and classic not in redact_text(classic)
    for _ in range(5_000):
        register_secret("k-" + uuid.uuid4().hex)
    # many registered secrets later, the first ones are still found, and text stays intact
    assert redact_text(f"x {odd} y") == f"x {MASK} y"
    assert redact_text("nothing secret here.") == "nothing secret here."
