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
    async with worker_settings.in_process(settings, flow=True):
        flow_ids = [await submit(h, flow_token, {"prompt": f"expired {i}"}) for i in range(3)]
        api_ids = [(await h.http.post("/api/jobs", json={"prompt": f"dry {i}"},
                                      headers=h.auth(api_token))).json()["id"] for i in range(3)]
        for job_id in flow_ids:
            await h.wait_job(flow_token, job_id, {"paused"}, timeout=60)
        for job_id in api_ids:
            await h.wait_job(api_token, job_id, {"paused"}, timeout=60)
        await asyncio.sleep(0.5)
    kinds = sorted(a["kind"] for a in got)
    assert kinds == ["api_keys_exhausted", "flow_login_required"], got
    flow_alert = next(a for a in got if a["kind"] == "flow_login_required")
    assert flow_alert["account"] == h.settings.flow_account
    assert "veo-auth export --upload" in flow_alert["message"]
    assert key not in json.dumps(got)
