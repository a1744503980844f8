"""Job lifecycle through the HTTP API: idempotency, validation, cancel, SSE, Redis loss and the
reconciler, pagination."""

from __future__ import annotations

import asyncio
import json
from typing import Any

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
    ({"prompt": "x", "model": "veo-3.0-generate-001"}, "model"),  # retired
    ({"prompt": "x", "aspect_ratio": "4:3"}, "aspect_ratio"),
    ({"prompt": "x", "resolution": "8k"}, "resolution"),
    ({"prompt": "x", "duration_seconds": 2}, "duration_seconds"),
    ({"prompt": "x", "duration_seconds": 11}, "duration_seconds"),
    ({"prompt": "x", "number_of_videos": 5}, "number_of_videos"),
    ({"prompt": "x", "number_of_videos": 0}, "number_of_videos"),
    ({"prompt": "x", "person_generation": "allow_adult"}, "person_generation"),
    ({"prompt": "x", "person_generation": "everyone"}, "person_generation"),
    ({"prompt": "x", "negative_prompt": "blur"}, "negative_prompt"),  # Omni takes none
    ({"prompt": "x", "backend": "magic"}, "backend"),
    ({"prompt": "x", "enhance_prompt": "yes"}, "enhance_prompt"),
    ({"prompt": "x", "webhook_url": "ftp://h/x"}, "webhook_url"),
    ({"prompt": "x", "continuity": "loop"}, "continuity"),
    ({"prompt": "x", "final": {"transition": "wipe"}}, "transition"),
    ({"prompt": "x", "final": {"crossfade_seconds": 9}}, "final.crossfade_seconds"),
    ({"prompt": "x", "final": {"trim_end_frames": -1}}, "final.trim_end_frames"),
    ({"clips": [{"prompt": "y", "first_frame": "upl_nope"}]}, "clips[0].first_frame"),
    ({"clips": [{"prompt": "y", "last_frame": "upl_nope"}]}, "clips[0].last_frame"),
    ({"clips": [{"prompt": "y", "reference_images": ["upl_a", "upl_b", "upl_c", "upl_d"]}]},
     "clips[0].reference_images"),
    ({"clips": [{"prompt": "y", "reference_images": ["upl_nope"]}]},
     "clips[0].reference_images"),
    ({"clips": [{"prompt": "y", "extend_from": "out_nope"}]}, "clips[0].extend_from"),
    ({"continuity": "chain", "clips": [{"prompt": "a"}, {"prompt": "b",
                                                         "first_frame": "upl_a"}]},
     "clips[1].first_frame"),
    ({"prompt": "x", "model": "veo-3.1-fast", "backend": "api"}, "backend"),  # Flow only
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
    # retry brings it back as a fresh run: a new generation, every try available again
    fake_gemini.delay = 0
    resp = await h.http.post(f"/api/jobs/{job_id}/retry", headers=h.auth(token))
    assert resp.status_code == 202
    done = await h.wait_job(token, job_id, {"succeeded", "failed"})
    assert done["status"] == "succeeded" and len(done["outputs"]) == 1
    assert done["attempts"] == 1
    assert len(fake_gemini.creates()) == 2
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
                if line.startswith("data:"):
                    status = json.loads(line[5:])["status"]
                    if not statuses or statuses[-1] != status:
                        statuses.append(status)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.3)
    await h.start_worker()
    await asyncio.wait_for(listener, 20)
    assert statuses == ["queued", "running", "succeeded"]


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
    assert counts is not None and counts["requeued"] >= 5
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
