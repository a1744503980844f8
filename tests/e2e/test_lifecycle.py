"""Job lifecycle through the HTTP API: idempotency, validation, cancel, SSE, webhooks, Redis
loss and the reconciler."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.harness import Harness, add_key, new_key
from veo.sandbox.gemini import FakeGemini
from veo.worker import reconciler


async def test_idempotent_create(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("idem")
    await add_key(h, token, new_key())
    headers = {**h.auth(token), "Idempotency-Key": "order-42"}
    first = await h.http.post("/api/jobs", json={"prompt": "once"}, headers=headers)
    again = await h.http.post("/api/jobs", json={"prompt": "once"}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]
    other = await h.http.post("/api/jobs", json={"prompt": "twice"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    # concurrent replays still make one job
    results = await asyncio.gather(*(h.http.post(
        "/api/jobs", json={"prompt": "race"},
        headers={**h.auth(token), "Idempotency-Key": "race-1"}) for _ in range(8)))
    assert len({r.json()["id"] for r in results}) == 1
    assert sorted(r.status_code for r in results).count(201) == 1
    # the same key belongs to each user separately
    _, token2 = await h.user("idem2")
    await add_key(h, token2, new_key())
    mine = await h.http.post("/api/jobs", json={"prompt": "once"},
                             headers={**h.auth(token2), "Idempotency-Key": "order-42"})
    assert mine.status_code == 201 and mine.json()["id"] != first.json()["id"]


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"prompt": "x", "colour": "red"}, "colour"),
    ({}, "prompt"),
    ({"prompt": "x", "clips": [{"prompt": "y"}]}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"clips": []}, "clips"),
    ({"clips": [{"prompt": "y"}] * 51}, "clips"),
    ({"clips": [{"prompt": "y", "extra": 1}]}, "extra"),
    ({"prompt": "x", "model": "veo-9"}, "model"),
    ({"prompt": "x", "aspect_ratio": "4:3"}, "aspect_ratio"),
    ({"prompt": "x", "resolution": "8k"}, "resolution"),
    ({"prompt": "x", "resolution": "4k", "duration_seconds": 4}, "duration_seconds"),
    ({"prompt": "x", "model": "veo-3.1-lite-generate-preview", "resolution": "4k"}, "resolution"),
    ({"prompt": "x", "model": "veo-2.0-generate-001", "resolution": "1080p"}, "resolution"),
    ({"prompt": "x", "duration_seconds": 5}, "duration_seconds"),
    ({"prompt": "x", "number_of_videos": 5}, "number_of_videos"),
    ({"prompt": "x", "number_of_videos": 0}, "number_of_videos"),
    ({"prompt": "x", "person_generation": "allow_adult"}, "person_generation"),
    ({"prompt": "x", "person_generation": "everyone"}, "person_generation"),
    ({"prompt": "x", "backend": "magic"}, "backend"),
    ({"prompt": "x", "enhance_prompt": "yes"}, "enhance_prompt"),
    ({"prompt": "x", "webhook_url": "ftp://h/x"}, "webhook_url"),
    ({"clips": [{"prompt": "y", "first_frame": "upl_nope"}]}, "clips[0].first_frame"),
    ({"clips": [{"prompt": "y", "last_frame": "upl_nope"}]}, "clips[0].last_frame"),
    ({"model": "veo-3.0-generate-001", "clips": [{"prompt": "y", "first_frame": "upl_a",
                                                   "last_frame": "upl_b"}]},
     "clips[0].last_frame"),
    ({"prompt": "x", "resolution": "1080p", "aspect_ratio": "9:16",
      "model": "veo-3.0-generate-001"}, "aspect_ratio"),
]


async def test_validation_names_the_field_and_changes_nothing(harness: Harness) -> None:
    h = harness
    _, token = await h.user("validator")
    await add_key(h, token, new_key())
    before = await h.svc.db.pool.fetchval("SELECT count(*) FROM jobs")
    queued_before = await h.svc.redis.zcard("arq:queue")
    for body, field in BAD_FIELDS:
        resp = await h.http.post("/api/jobs", json=body, headers=h.auth(token))
        assert resp.status_code == 422, (body, resp.text)
        err = resp.json()["error"]
        assert field in err["message"] or (err.get("details") or {}).get("field") == field, \
            (body, err)
    assert await h.svc.db.pool.fetchval("SELECT count(*) FROM jobs") == before
    assert await h.svc.redis.zcard("arq:queue") == queued_before
    bad_json = await h.http.post("/api/jobs", content=b"{nope", headers=h.auth(token))
    assert bad_json.status_code == 400
    huge = await h.http.post("/api/jobs", content=b"{" + b" " * 300_000 + b"}",
                             headers=h.auth(token))
    assert huge.status_code == 413


async def test_cancel_during_run(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("canceller")
    await add_key(h, token, new_key())
    fake_gemini.delay = 30
    await h.start_worker()
    resp = await h.http.post("/api/jobs", json={"prompt": "long one"}, headers=h.auth(token))
    job_id = resp.json()["id"]
    await h.wait_job(token, job_id, {"running"})
    for _ in range(100):  # wait for the operation to exist, so cancel interrupts polling
        if fake_gemini.creates():
            break
        await asyncio.sleep(0.05)
    resp = await h.http.post(f"/api/jobs/{job_id}/cancel", headers=h.auth(token))
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"
    await asyncio.sleep(1.0)  # several heartbeats: the worker lets go
    body = (await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))).json()
    assert body["status"] == "canceled" and body["outputs"] == []
    assert body["clips"][0]["status"] == "canceled"
    assert (await h.http.post(f"/api/jobs/{job_id}/cancel", headers=h.auth(token))).status_code \
        == 409
    # retry brings it back and it completes
    fake_gemini.delay = 0
    for op in fake_gemini.operations.values():
        op.ready_at = 0
    resp = await h.http.post(f"/api/jobs/{job_id}/retry", headers=h.auth(token))
    assert resp.status_code == 202
    done = await h.wait_job(token, job_id, {"succeeded", "failed"})
    assert done["status"] == "succeeded" and len(done["outputs"]) == 1
    # the stored operation was resumed, not paid for again
    assert len(fake_gemini.creates()) == 1
    # delete removes the row and the objects
    key = f"outputs/{job_id}/0-0.mp4"
    assert await h.svc.storage.head(key) is not None
    assert (await h.http.delete(f"/api/jobs/{job_id}", headers=h.auth(token))).status_code == 204
    assert await h.svc.storage.head(key) is None
    assert (await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))).status_code == 404


async def test_sse_delivers_each_transition(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("watcher")
    await add_key(h, token, new_key())
    fake_gemini.delay = 0.5
    resp = await h.http.post("/api/jobs", json={"prompt": "watch me"}, headers=h.auth(token))
    job_id = resp.json()["id"]
    statuses: list[str] = []

    async def listen() -> None:
        async with h.http.stream("GET", f"/api/jobs/{job_id}/events",
                                 headers=h.auth(token)) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    status = json.loads(line[6:])["status"]
                    if not statuses or statuses[-1] != status:
                        statuses.append(status)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.3)
    await h.start_worker()
    await asyncio.wait_for(listener, 20)
    assert statuses == ["queued", "running", "succeeded"]


async def test_webhook_signed_and_verifiable(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    received: list[tuple[dict[str, str], bytes]] = []
    fail_first = {"n": 1}

    async def hook(request: Request) -> Response:
        if fail_first["n"]:
            fail_first["n"] -= 1
            return Response(status_code=503)
        received.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/hook", hook,
                                                                   methods=["POST"])]),
                                           host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        _, token = await h.user("hooked")
        await add_key(h, token, new_key())
        secret = (await h.http.get("/api/me", headers=h.auth(token))).json()["webhook_secret"]
        from veo.worker import webhooks

        webhooks.SCHEDULE = (0.2, *webhooks.SCHEDULE[1:])  # type: ignore[misc]
        await h.start_worker()
        resp = await h.http.post("/api/jobs", headers=h.auth(token), json={
            "prompt": "notify me", "webhook_url": f"http://127.0.0.1:{port}/hook"})
        job_id = resp.json()["id"]
        await h.wait_job(token, job_id, {"succeeded"})
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.05)
        assert len(received) == 1  # the first attempt got 503, the retry succeeded
        headers, body = received[0]
        msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
        assert abs(int(ts) - time.time()) < 60
        key = base64.b64decode(secret.removeprefix("whsec_"))
        expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body,
                                             hashlib.sha256).digest()).decode()
        versions = dict(sig.split(",", 1) for sig in headers["webhook-signature"].split())
        assert hmac.compare_digest(versions["v1"], expected)
        event = json.loads(body)
        assert event["type"] == "job.succeeded" and event["data"]["id"] == job_id
        assert len(event["data"]["outputs"]) == 1
    finally:
        server.should_exit = True
        await task


async def test_private_webhook_refused_by_default(harness: Harness) -> None:
    from veo import lifecycle
    from veo.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="private or loopback"):
        await lifecycle.check_webhook_url("http://127.0.0.1:9/x", allow_private=False)
    with pytest.raises(InvalidRequest, match="private or loopback"):
        await lifecycle.check_webhook_url("http://[::1]/x", allow_private=False)
    with pytest.raises(InvalidRequest, match="private or loopback"):
        await lifecycle.check_webhook_url("http://169.254.169.254/latest", allow_private=False)
    await lifecycle.check_webhook_url("http://127.0.0.1:9/x", allow_private=True)


async def test_redis_flush_loses_no_job(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("flushed")
    await add_key(h, token, new_key())
    ids = []
    for i in range(5):
        resp = await h.http.post("/api/jobs", json={"prompt": f"survivor {i}"},
                                 headers=h.auth(token))
        ids.append(resp.json()["id"])
    assert await h.svc.redis.zcard("arq:queue") >= 5
    await h.svc.redis.flushdb()  # Redis keeps nothing on disk: a restart looks like this
    assert await h.svc.redis.zcard("arq:queue") == 0
    counts = await reconciler.reconcile_once(h.svc)
    assert counts["requeued"] >= 5
    await h.start_worker()
    for job_id in ids:
        done = await h.wait_job(token, job_id, {"succeeded", "failed"})
        assert done["status"] == "succeeded"
    assert len(fake_gemini.creates()) == 5


async def test_queue_position_and_listing(harness: Harness) -> None:
    h = harness
    _, token = await h.user("lister")
    await add_key(h, token, new_key())
    ids = [(await h.http.post("/api/jobs", json={"prompt": f"n{i}"}, headers=h.auth(token)))
           .json()["id"] for i in range(5)]
    positions = [(await h.http.get(f"/api/jobs/{i}", headers=h.auth(token))).json()
                 ["queue_position"] for i in ids]
    assert positions == sorted(positions) and len(set(positions)) == 5
    page1 = (await h.http.get("/api/jobs?limit=2", headers=h.auth(token))).json()
    assert [j["id"] for j in page1["data"]] == ids[::-1][:2] and page1["has_more"]
    page2 = (await h.http.get(f"/api/jobs?limit=2&cursor={page1['next_cursor']}",
                              headers=h.auth(token))).json()
    page3 = (await h.http.get(f"/api/jobs?limit=2&cursor={page2['next_cursor']}",
                              headers=h.auth(token))).json()
    assert [j["id"] for j in page2["data"] + page3["data"]] == ids[::-1][2:]
    assert page3["has_more"] is False and page3["next_cursor"] is None
    await h.http.post(f"/api/jobs/{ids[0]}/cancel", headers=h.auth(token))
    canceled = (await h.http.get("/api/jobs?status=canceled", headers=h.auth(token))).json()
    assert [j["id"] for j in canceled["data"]] == [ids[0]]
    for bad in ("limit=0", "limit=x", "status=pending", "cursor=zzz", "colour=red"):
        assert (await h.http.get(f"/api/jobs?{bad}", headers=h.auth(token))).status_code == 422
