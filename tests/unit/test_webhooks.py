"""Webhooks without a network: Standard Webhooks signing, the address rule ``is_public``, and
``check_url`` on literal addresses (no DNS), which pins the connection to the checked address."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from datetime import UTC, datetime

import pytest

from veo import webhooks
from veo.errors import InvalidRequest
from veo.records import ErrorInfo, Final, FinalOptions, Job, Output, Params


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # the example of the Standard Webhooks specification (and its reference libraries)
    sig = webhooks.sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                        "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_covers_id_timestamp_and_body() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    body = b'{"type": "job.succeeded"}'
    sig = webhooks.sign(secret, "evt_1", 1700000000, body)
    mac = hmac.new(b"k" * 24, b"evt_1.1700000000." + body, hashlib.sha256).digest()
    assert sig == "v1," + base64.b64encode(mac).decode()
    assert webhooks.sign(secret, "evt_2", 1700000000, body) != sig
    assert webhooks.sign(secret, "evt_1", 1700000001, body) != sig
    assert webhooks.sign(secret, "evt_1", 1700000000, body + b" ") != sig


REFUSED = [
    "64:ff9b::7f00:1",       # NAT64 of 127.0.0.1
    "64:ff9b:1::a00:1",      # NAT64 local-use prefix
    "::127.0.0.1",           # IPv4-compatible
    "::ffff:127.0.0.1",      # IPv4-mapped loopback
    "::ffff:8.8.8.8",        # IPv4-mapped, even of a public address
    "2002:7f00:1::",         # 6to4 of 127.0.0.1
    "2001::1",               # Teredo
    "127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::",
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "fc00::1", "fd12:3456::1",
    "169.254.169.254", "fe80::1",
    "100.64.0.1",            # carrier-grade NAT
    "224.0.0.1", "ff02::1", "255.255.255.255",
    "192.0.2.1", "198.18.0.1",  # documentation, benchmarking
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_global_addresses_are_refused(address: str) -> None:
    assert webhooks.is_public(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111"])
def test_global_addresses_are_allowed(address: str) -> None:
    assert webhooks.is_public(ipaddress.ip_address(address)) is True


def _literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize("address", REFUSED)
async def test_check_url_refuses_every_non_global_literal(address: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await webhooks.check_url(f"http://{_literal(address)}:8080/hook", allow_private=False)
    assert caught.value.details == {"field": "webhook_url"}
    assert caught.value.status == 422


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http:///nohost",
                                 "https://user:pw@93.184.215.14/x",
                                 "http://93.184.215.14:99999/x"])
async def test_check_url_refuses_malformed_urls(url: str) -> None:
    with pytest.raises(InvalidRequest):
        await webhooks.check_url(url, allow_private=True)


async def test_check_url_pins_the_checked_address() -> None:
    target = await webhooks.check_url("https://93.184.215.14/hooks/veo?x=1",
                                      allow_private=False)
    assert target.url == "https://93.184.215.14:443/hooks/veo?x=1"
    assert target.host == "93.184.215.14" and target.server_name == "93.184.215.14"
    v6 = await webhooks.check_url("http://[2606:4700:4700::1111]:8080/h", allow_private=False)
    assert v6.url == "http://[2606:4700:4700::1111]:8080/h"
    assert v6.host == "[2606:4700:4700::1111]:8080"


async def test_check_url_resolves_names_once_and_pins_the_answer() -> None:
    # "localhost" resolves without a network; the connection goes to what was checked, while
    # the Host header and TLS name stay the URL's own
    with pytest.raises(InvalidRequest):
        await webhooks.check_url("http://localhost:9/hook", allow_private=False)
    target = await webhooks.check_url("http://localhost:9/hook", allow_private=True)
    pinned = target.url.split("//", 1)[1].split("/", 1)[0]
    assert pinned in ("127.0.0.1:9", "[::1]:9"), target.url
    assert target.host == "localhost:9" and target.server_name == "localhost"


def test_payload_names_the_event_and_links_without_secrets() -> None:
    now = datetime.now(UTC)
    job = Job(id="job_1", user_id="usr_1", status="failed", paused_reason=None, backend="api",
              requested_backend="auto", model="gemini-omni-1.1-flash", params=Params(),
              webhook_url="https://example.com/h", idempotency_key=None, request_hash=None,
              progress=40, flow_account=None, flow_needs_auth=False,
              error=ErrorInfo(code="timeout", message="too slow", retryable=True,
                              details={"internal": "x"}),
              attempts=2, run_seq=3, worker_id=None, heartbeat_at=None, resume_at=None,
              created_at=now, started_at=now, finished_at=now, updated_at=now)
    out = Output(id="out_1", job_id="job_1", clip=0, variant=1, object_key="outputs/job_1/0-1.mp4",
                 size=10, sha256="ab", content_type="video/mp4", created_at=now)
    final = Final(job_id="job_1", status="failed", options=FinalOptions(), object_key=None,
                  poster_key=None, duration_seconds=None, size=None, sha256=None, error=None,
                  started_at=None, finished_at=None)
    body = webhooks.payload(job, [out], final)
    assert body["type"] == "job.failed"
    data = body["data"]
    assert data["error"] == {"code": "timeout", "message": "too slow", "retryable": True}
    assert data["outputs"] == [{"id": "out_1", "clip": 0, "variant": 1, "size": 10,
                                "sha256": "ab", "path": "/api/jobs/job_1/outputs/out_1"}]
    assert data["final"] == {"status": "failed", "size": None, "sha256": None, "path": None}
    assert "object_key" not in str(body) and "usr_1" not in str(body)
