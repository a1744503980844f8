"""Webhooks and operator alerts (issue defects 8 and 13): the address checked is the address
connected to, no redirect is followed, every non-global address form is refused at creation and
again at delivery; deliveries and alerts wait in PostgreSQL's outbox until delivered or given
up, so a Redis loss drops none, and an alert whose POST failed is retried, not marked sent.

Receivers run on loopback; the harness sets ``VEO_WEBHOOK_ALLOW_PRIVATE=1`` so they may be
reached, except where a test turns it off to see the refusals.

On the old design (19630cb) these fail (read from its code): webhooks were arq jobs in Redis (a
flush lost them) posted to the URL as given, so httpx resolved the name a second time; the SSRF
check used ``is_global`` alone, which on Python 3.11 passes ``[64:ff9b::7f00:1]``,
``[::127.0.0.1]`` and ``[2002:7f00:1::]``; and an operator alert was POSTed once with its cause
recorded whatever the answer, so a failed POST was never retried.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    Harness,
    Receiver,
    add_key,
    api_env,
    make_user,
    new_key,
    running,
    until,
)
from veo import webhooks
from veo.records import OutboxItem
from veo.sandbox.gemini import FakeGemini
from veo.worker import outbox

TERMINAL = {"succeeded", "failed", "canceled"}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@contextlib.asynccontextmanager
async def service(pg_dsn: str, redis_url: str, tmp_path: Path, fake: FakeGemini,
                  **extra: str) -> AsyncIterator[Harness]:
    async with running(api_env(pg_dsn, redis_url, tmp_path / "store", fake.url, **extra)) as h:
        yield h


async def user_with_key(h: Harness, name: str) -> str:
    _, token = await make_user(h, name)
    await add_key(h, token, new_key(name[:6]))
    return token


async def submit(h: Harness, token: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await h.http.post("/api/jobs", json=body, headers=h.auth(token))
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    return out


async def outbox_rows(h: Harness, **where: str) -> list[dict[str, Any]]:
    clause = " AND ".join(f"{k} = ${i + 1}" for i, k in enumerate(where)) or "true"
    rows = await h.svc.db.pool.fetch(f"SELECT * FROM outbox WHERE {clause} ORDER BY created_at",
                                     *where.values())
    return [dict(r) for r in rows]


def verify(secret: str, hit: dict[str, Any]) -> dict[str, Any]:
    """Check a delivery's Standard Webhooks signature with the user's secret; its payload."""
    h = hit["headers"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + hit["body"]
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert h["webhook-signature"] == f"v1,{expected}"
    payload: dict[str, Any] = json.loads(hit["body"])
    return payload


# ---- webhooks: signed, to the checked address, no redirects ----------------------------------

async def test_webhook_is_signed_and_goes_to_the_checked_address(
        harness: Harness, receiver: Receiver) -> None:
    h = harness
    token = await user_with_key(h, "hooked")
    secret = (await h.http.get("/api/me", headers=h.auth(token))).json()["webhook_secret"]
    port = receiver.url.rsplit(":", 1)[1]
    await h.start_worker()
    job = await submit(h, token, {"prompt": "tell me when", "webhook_url":
                                  f"http://localhost:{port}/hooks/veo?k=1"})
    await until(lambda: receiver.hits("/hooks/veo"), 30, "the delivery")
    (hit,) = receiver.hits("/hooks/veo")
    payload = verify(secret, hit)
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job["id"]
    assert hit["headers"]["host"] == f"localhost:{port}"  # the URL's name, the checked address
    assert hit["headers"]["webhook-id"] == f"evt_{job['id']}_succeeded_0"
    await until(lambda: outbox_rows(h, job_id=job["id"], status="delivered"), 5)
    (row,) = await outbox_rows(h, job_id=job["id"])
    assert row["attempts"] == 1


async def test_delivery_connects_to_the_pinned_address_without_a_second_lookup(
        receiver: Receiver) -> None:
    """The request goes to the address in the checked target; its name (which resolves to
    nothing) is only the Host header: a second DNS answer could not redirect it."""
    port = int(receiver.url.rsplit(":", 1)[1])
    target = webhooks.Target(url=f"http://127.0.0.1:{port}/pinned", host=f"hooks.invalid:{port}",
                             server_name="hooks.invalid")
    status = await webhooks.post(target, b"{}", {"content-type": "application/json"})
    assert status == 200
    (hit,) = receiver.hits("/pinned")
    assert hit["headers"]["host"] == f"hooks.invalid:{port}"


async def test_redirects_are_not_followed(harness: Harness, receiver: Receiver) -> None:
    h = harness
    token = await user_with_key(h, "redirected")
    receiver.answers = [302]
    receiver.location = receiver.url + "/elsewhere"
    await h.start_worker()
    job = await submit(h, token, {"prompt": "moved", "webhook_url": receiver.url + "/first"})
    await until(lambda: receiver.hits("/first"), 30, "the first delivery")
    await asyncio.sleep(1.5)
    assert receiver.hits("/elsewhere") == []
    (row,) = await outbox_rows(h, job_id=job["id"])
    assert row["status"] == "pending" and row["last_error"] == "HTTP 302"  # to be tried again


async def test_a_gone_receiver_is_given_up(harness: Harness, receiver: Receiver) -> None:
    h = harness
    token = await user_with_key(h, "gone")
    receiver.answers = [410]
    await h.start_worker()
    job = await submit(h, token, {"prompt": "nobody home", "webhook_url": receiver.url + "/g"})
    await until(lambda: receiver.hits("/g"), 30, "the delivery")
    await until(lambda: outbox_rows(h, job_id=job["id"], status="abandoned"), 5)
    await asyncio.sleep(outbox.IDLE + 0.5)
    assert len(receiver.hits("/g")) == 1


REFUSED_URLS = [
    "http://[64:ff9b::7f00:1]/hook",
    "http://[::127.0.0.1]/hook",
    "http://[2002:7f00:1::]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::1]/hook",
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/hook",
    "https://user:pass@93.184.215.14/hook",
]


async def test_non_global_webhook_addresses_are_refused_at_creation(
        pg_dsn: str, redis_url: str, redis: Any, tmp_path: Path,
        fake_gemini: FakeGemini) -> None:
    async with service(pg_dsn, redis_url, tmp_path, fake_gemini,
                       VEO_WEBHOOK_ALLOW_PRIVATE="0") as h:
        token = await user_with_key(h, "ssrf")
        before = await h.svc.db.pool.fetchval("SELECT count(*) FROM jobs")
        for url in REFUSED_URLS:
            resp = await h.http.post("/api/jobs", json={"prompt": "x", "webhook_url": url},
                                     headers=h.auth(token))
            assert resp.status_code == 422, (url, resp.text)
            assert resp.json()["error"]["details"]["field"] == "webhook_url", url
        assert await h.svc.db.pool.fetchval("SELECT count(*) FROM jobs") == before


async def test_a_delivery_to_a_now_private_address_is_refused_and_given_up(
        pg_dsn: str, redis_url: str, redis: Any, tmp_path: Path, fake_gemini: FakeGemini,
        receiver: Receiver) -> None:
    """The URL is checked again when it is delivered (DNS may have changed since the job was
    created): a private answer then abandons the delivery without connecting."""
    async with service(pg_dsn, redis_url, tmp_path, fake_gemini,
                       VEO_WEBHOOK_ALLOW_PRIVATE="0") as h:
        user, _ = await make_user(h, "rebound")
        job = await h.svc.db.pool.fetchval(
            "INSERT INTO jobs (id, user_id, backend, model, params, status, finished_at) "
            "VALUES ('job_rebound', $1, 'api', 'gemini-omni-1.1-flash', '{}', 'succeeded', "
            "now()) RETURNING id", user.id)
        url = receiver.url.replace("127.0.0.1", "localhost") + "/rebound"
        assert await h.svc.db.add_outbox("evt_rebound", "webhook", {"type": "job.succeeded"},
                                         job_id=job, url=url)
        (item,) = [i for i in await h.svc.db.claim_outbox(10, 60) if i.id == "evt_rebound"]
        assert isinstance(item, OutboxItem)
        assert await outbox.deliver(h.svc, item) == "abandoned"
        assert receiver.received == []
        (row,) = await outbox_rows(h, id="evt_rebound")
        assert row["status"] == "abandoned" and "private" in row["last_error"]


# ---- the outbox survives Redis ------------------------------------------------------------

async def test_webhook_survives_a_redis_loss(harness: Harness, receiver: Receiver) -> None:
    h = harness
    token = await user_with_key(h, "durable")
    secret = (await h.http.get("/api/me", headers=h.auth(token))).json()["webhook_secret"]
    receiver.answers = [503]  # the receiver is down at first
    await h.start_worker()
    job = await submit(h, token, {"prompt": "remember me", "webhook_url": receiver.url + "/d"})
    await until(lambda: receiver.hits("/d"), 30, "the first attempt")
    await h.svc.redis.flushall()  # Redis forgets everything it had
    await until(lambda: len(receiver.hits("/d")) == 2, webhooks.SCHEDULE[0] + 10,
                "the second attempt")
    first, second = receiver.hits("/d")
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]  # the same event
    assert verify(secret, second)["data"]["id"] == job["id"]
    await until(lambda: outbox_rows(h, job_id=job["id"], status="delivered"), 5)
    (row,) = await outbox_rows(h, job_id=job["id"])
    assert row["attempts"] == 2 and row["last_error"] is None


async def test_failed_alert_is_retried_not_marked_sent(
        own_database: str, redis_url: str, redis: Any, tmp_path: Path, fake_gemini: FakeGemini,
        receiver: Receiver) -> None:
    # a database of its own: no alert of an earlier test may reach this receiver first.
    # The key cools for as long as Google's answer says (a minute), so the cause lasts.
    async with service(own_database, redis_url, tmp_path, fake_gemini, VEO_KEY_MAX_WAIT_SECONDS="0",
                       VEO_KEY_COOLDOWN_MAX_SECONDS="120",
                       ALERT_WEBHOOK_URL=receiver.url + "/alerts") as h:
        user, token = await make_user(h, "alerted")
        key = new_key("alert")
        await add_key(h, token, key)
        fake_gemini.key(key, quota=0)  # every create answers 429: every key is cooling
        receiver.answers = [500]

        def mine() -> list[dict[str, Any]]:
            return [hit for hit in receiver.hits("/alerts")
                    if json.loads(hit["body"]).get("scope") == user.id]

        async def rows() -> list[dict[str, Any]]:
            return [r for r in await outbox_rows(h, kind="alert")
                    if r["payload"].get("scope") == user.id]

        await h.start_worker()
        job = await submit(h, token, {"prompt": "no key free"})
        await h.wait_job(token, job["id"], {"paused"})
        await until(mine, 30, "the first alert POST")
        assert receiver.hits("/alerts") == mine()  # answered 500
        await h.svc.redis.flushall()
        await until(lambda: len(mine()) == 2, outbox.ALERT_SCHEDULE[0] + 10,
                    "the alert's second POST")
        first, second = mine()
        assert json.loads(first["body"]) == json.loads(second["body"])
        assert json.loads(second["body"])["kind"] == "api_keys_exhausted"

        async def delivered() -> bool:
            return [r["status"] for r in await rows()] == ["delivered"]

        await until(delivered, 5, "the alert to be marked delivered")
        (row,) = await rows()
        assert row["attempts"] == 2
        # one alert per cause while it lasts
        await asyncio.sleep(outbox.IDLE + 0.5)
        assert len(mine()) == 2
