"""Operator alerts: one POST to ALERT_WEBHOOK_URL per cause, not one per job."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.harness import Harness, add_key, new_key, submit
from veo.sandbox.flow import FakeFlow
from veo.sandbox.gemini import FakeGemini
from veo.worker import settings as worker_settings


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        got.append(json.loads(await request.body()))
        return Response(status_code=204)

    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/alert", hook,
                                                                   methods=["POST"])]),
                                           host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/alert", got
    server.should_exit = True
    await task


async def test_one_alert_per_cause(flow_harness: Harness, fake_flow: FakeFlow,
                                   fake_gemini: FakeGemini,
                                   receiver: tuple[str, list[dict[str, Any]]]) -> None:
    h = flow_harness
    url, got = receiver
    settings = dataclasses.replace(h.settings, alert_webhook_url=url)
    _, flow_token = await h.user("alerted")
    _, api_token = await h.user("exhausted")
    key = new_key("solo")
    await add_key(h, api_token, key)
    fake_gemini.key(key, quota=0)
    fake_flow.expire_all()
    settings = dataclasses.replace(settings, key_max_wait_seconds=0.0)
    async with worker_settings.in_process(settings, flow=True):
        flow_ids = [await submit(h, flow_token, {"prompt": f"expired {i}"}) for i in range(3)]
        api_ids = [(await h.http.post("/api/jobs", json={"prompt": f"dry {i}"},
                                      headers=h.auth(api_token))).json()["id"] for i in range(3)]
        for job_id in flow_ids:
            await h.wait_job(flow_token, job_id, {"paused"}, timeout=60)
        for job_id in api_ids:
            await h.wait_job(api_token, job_id, {"paused"}, timeout=60)
        for _ in range(100):  # the outbox sends within a second
            if len(got) >= 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    kinds = sorted(a["kind"] for a in got)
    assert kinds == ["api_keys_exhausted", "flow_login_required"], got
    flow_alert = next(a for a in got if a["kind"] == "flow_login_required")
    assert flow_alert["account"] == h.settings.flow_account
    assert "veo-auth export --upload" in flow_alert["message"]
    assert key not in json.dumps(got)
    assert len({a["id"] for a in got}) == 2  # each alert carries an id kept across retries


async def test_failed_alert_is_retried_not_forgotten(harness: Harness,
                                                     fake_gemini: FakeGemini) -> None:
    """An alert whose POST failed stays in the outbox and is sent again later."""
    h = harness
    calls: list[int] = []

    async def flaky(request: Request) -> Response:
        calls.append(1)
        return Response(status_code=503 if len(calls) == 1 else 204)

    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/a", flaky,
                                                                   methods=["POST"])]),
                                           host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/a"
    from veo import alerts
    from veo.worker import outbox

    try:
        settings = dataclasses.replace(h.settings, alert_webhook_url=url)
        assert await alerts.raise_alert(h.svc.db, "test_cause", "scope", {"message": "m"})
        assert not await alerts.raise_alert(h.svc.db, "test_cause", "scope", {"message": "m"})
        svc = dataclasses.replace(h.svc, settings=settings)
        (item,) = await h.svc.db.claim_outbox(10, 60)
        assert await outbox.deliver(svc, item) == "retrying"
        row = await h.svc.db.get_outbox(item.id)
        assert row is not None and row.status == "pending" and row.last_error == "HTTP 503"
        await h.svc.db.pool.execute("UPDATE outbox SET next_at = now() WHERE id = $1", item.id)
        (again,) = await h.svc.db.claim_outbox(10, 60)
        assert again.id == item.id and again.attempts == 2
        assert await outbox.deliver(svc, again) == "delivered"
        assert len(calls) == 2
    finally:
        server.should_exit = True
        await task


async def test_webhook_to_unresolvable_host_is_retried(harness: Harness) -> None:
    """DNS trouble at delivery time may pass: the delivery is retried, not given up."""
    h = harness
    from veo.worker import outbox

    _, token = await h.user("dns")
    await add_key(h, token, new_key())
    job_id = await submit(h, token, {"prompt": "x"})
    await h.svc.db.add_outbox("evt_dns", "webhook", {"type": "job.succeeded"}, job_id=job_id,
                              url="http://no-such-host.invalid/hook")
    (item,) = [i for i in await h.svc.db.claim_outbox(10, 60) if i.id == "evt_dns"]
    assert await outbox.deliver(h.svc, item) == "retrying"
    row = await h.svc.db.get_outbox("evt_dns")
    assert row is not None and row.status == "pending" and "resolve" in (row.last_error or "")
