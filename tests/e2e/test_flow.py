"""Flow backend end to end: real Chromium (Debian) drives the fake Flow site."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from tests.harness import Harness, add_key, fetch_output, new_key, png, submit, upload
from veo.sandbox import mp4
from veo.sandbox.flow import FakeFlow
from veo.sandbox.gemini import FakeGemini


async def test_text_and_frames_variants_land_in_their_slots(flow_harness: Harness,
                                                            fake_flow: FakeFlow) -> None:
    h = flow_harness
    _, token = await h.user("flowuser")
    red, blue = png((200, 10, 10)), png((10, 10, 200))
    first, last = await upload(h, token, red), await upload(h, token, blue)
    await h.start_worker(flow=True)
    job_id = await submit(h, token, {
        "number_of_videos": 2, "aspect_ratio": "9:16",
        "clips": [{"prompt": "flow clip zero"},
                  {"prompt": "flow clip one", "first_frame": first["id"],
                   "last_frame": last["id"]},
                  {"prompt": "flow clip two"}]})
    done = await h.wait_job(token, job_id, {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", json.dumps(done)[:2000]
    slots = {(o["clip"], o["variant"]): o for o in done["outputs"]}
    assert sorted(slots) == [(c, v) for c in range(3) for v in range(2)]
    seen = set()
    for (clip, variant), out in slots.items():
        ident = mp4.identify(await fetch_output(h, token, out["url"]))
        assert ident is not None and ident["backend"] == "flow"
        assert ident["prompt"] == ["flow clip zero", "flow clip one", "flow clip two"][clip]
        assert ident["sample"] == variant and ident["aspect"] == "9:16" and ident["count"] == 2
        seen.add(ident["generation"])
        if clip == 1:
            assert ident["mode"] == "frames"
            assert ident["first_frame_sha256"] == hashlib.sha256(red).hexdigest()
            assert ident["last_frame_sha256"] == hashlib.sha256(blue).hexdigest()
    assert len(seen) == 6  # six different videos: no tile was downloaded twice
    assert len(fake_flow.submits) == 3
    # one browser served every clip
    flow = h.worker.ctx["backends"]["flow"]  # type: ignore[union-attr]
    assert flow.browser.launches == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("ui", ["A", "B"])
async def test_both_editor_generations(flow_harness: Harness, fake_flow: FakeFlow,
                                       ui: str) -> None:
    h = flow_harness
    fake_flow.ui = ui
    fake_flow.toast = True  # a toast covers the composer after submit
    _, token = await h.user(f"ui{ui}")
    await h.start_worker(flow=True)
    job_id = await submit(h, token, {"clips": [{"prompt": f"editor {ui} one"},
                                               {"prompt": f"editor {ui} two"}]})
    done = await h.wait_job(token, job_id, {"succeeded", "failed"}, timeout=90)
    assert done["status"] == "succeeded", json.dumps(done)[:2000]
    assert [s["prompt"] for s in fake_flow.submits] == [f"editor {ui} one", f"editor {ui} two"]


@pytest.mark.parametrize(("marker", "kind", "retryable"), [
    ("[policy]", "policy", False),
    ("[ratelimit]", "rate_limited", True),
    ("[unusual]", "unusual_activity", True),
    ("[generic]", "generation_failed", True),
])
async def test_failures_are_classified_with_debug_files(
        flow_harness: Harness, marker: str, kind: str, retryable: bool) -> None:
    h = flow_harness
    _, token = await h.user("failing")
    await h.start_worker(flow=True)
    await h.svc.db.pool.execute("SELECT 1")
    job_id = await submit(h, token, {"prompt": f"trouble {marker}"})
    body = await h.wait_job(token, job_id, {"failed", "queued"}, timeout=60)
    for _ in range(600):
        if body["error"]:
            break
        await asyncio.sleep(0.05)
        body = (await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))).json()
    err = body["error"] if body["status"] == "failed" else \
        body["clips"][0]["error"] or body["error"]
    assert err["code"] == kind, body
    assert err["retryable"] is retryable
    debug = (body["clips"][0]["error"] or err)["details"]["debug"]
    assert debug["screenshot"].startswith(f"debug/{job_id}/")
    assert await h.svc.storage.head(debug["screenshot"]) is not None
    html = await h.svc.storage.get_bytes(debug["html"])
    assert b"data-tile-id" in html


async def test_insufficient_credits_is_not_drift(flow_harness: Harness,
                                                 fake_flow: FakeFlow) -> None:
    h = flow_harness
    fake_flow.credits = False
    _, token = await h.user("broke")
    await h.start_worker(flow=True)
    job_id = await submit(h, token, {"prompt": "no money"})
    body = await h.wait_job(token, job_id, {"failed"}, timeout=60)
    assert body["error"]["code"] == "insufficient_credits"
    status = (await h.http.get("/api/flow/queue/status")).json()
    assert status["failed"] >= 1


async def test_login_expiry_pauses_batch_and_resumes_from_bucket(
        flow_harness: Harness, fake_flow: FakeFlow, fake_gemini: FakeGemini) -> None:
    h = flow_harness
    account = h.settings.flow_account
    _, token = await h.user("batcher")
    _, api_token = await h.user("apiuser")
    await add_key(h, api_token, new_key("flowtest"))
    fake_flow.delay = 0.3
    await h.start_worker(flow=True)
    ids = [await submit(h, token, {"prompt": f"batch {i}"}) for i in range(10)]
    # let a couple finish, then the Google session dies mid-batch
    for _ in range(600):
        done = [(await h.http.get(f"/api/jobs/{i}", headers=h.auth(token))).json()["status"]
                for i in ids[:2]]
        if all(s == "succeeded" for s in done):
            break
        await asyncio.sleep(0.1)
    fake_flow.expire_all()
    for _ in range(600):
        bodies = [(await h.http.get(f"/api/jobs/{i}", headers=h.auth(token))).json()
                  for i in ids]
        if all(b["status"] in ("paused", "succeeded") for b in bodies) and \
                any(b["status"] == "paused" for b in bodies):
            break
        await asyncio.sleep(0.1)
    statuses = [b["status"] for b in bodies]
    assert "failed" not in statuses and "paused" in statuses, statuses
    for b in bodies:
        if b["status"] == "paused":
            assert b["paused_reason"] == "flow_needs_auth" and b["flow_needs_auth"] is True
    queue = (await h.http.get("/api/flow/queue/status")).json()
    assert queue["paused"] is True and queue["waiting_auth"] == statuses.count("paused")
    health = (await h.http.get("/api/health")).json()
    assert health["backends"]["flow"]["needs_auth"] is True
    # API jobs keep running while Flow waits
    api_job = (await h.http.post("/api/jobs", json={"prompt": "api meanwhile"},
                                 headers=h.auth(api_token))).json()
    assert api_job["backend"] == "api"
    assert (await h.wait_job(api_token, api_job["id"], {"succeeded"}))["status"] == "succeeded"
    # the operator writes a fresh plaintext state straight into the bucket
    path = Path(h.settings.storage_dir) / h.settings.flow_storage_state_key
    path.write_text(json.dumps(fake_flow.storage_state()))
    for i in ids:
        done_body = await h.wait_job(token, i, {"succeeded", "failed"}, timeout=120)
        assert done_body["status"] == "succeeded", done_body
    # the plaintext file was re-written encrypted
    assert path.read_bytes().startswith(b"v1.")
    assert (await h.http.get("/api/flow/queue/status")).json()["paused"] is False
    _ = account


@pytest.mark.parametrize("flow_harness", [{"FLOW_MAX_CONCURRENT": "2"}], indirect=True)
async def test_max_concurrent_respected(flow_harness: Harness, fake_flow: FakeFlow) -> None:
    h = flow_harness
    fake_flow.delay = 1.0
    _, token = await h.user("parallel")
    await h.start_worker(flow=True)
    ids = [await submit(h, token, {"prompt": f"par {i}"}) for i in range(5)]
    for i in ids:
        assert (await h.wait_job(token, i, {"succeeded", "failed"}, timeout=120))["status"] \
            == "succeeded"
    flow = h.worker.ctx["backends"]["flow"]  # type: ignore[union-attr]
    assert flow.peak_running == 2  # type: ignore[attr-defined]


async def test_login_stored_while_no_worker_ran_resumes_at_startup(
        flow_harness: Harness) -> None:
    from veo import keys

    h = flow_harness
    _, token = await h.user("startup")
    job_id = await submit(h, token, {"prompt": "waited through a restart"})
    row = await h.svc.db.get_job(job_id)
    assert row is not None
    # as a worker that died after a login expiry left it: flag set, job paused
    assert await h.svc.db.pause_job(job_id, row["run_seq"], "flow_needs_auth") is not None
    await h.svc.redis.set(keys.flow_paused_flag(h.settings.flow_account), "1")
    # the (valid) login in the bucket was stored meanwhile; a new worker starts
    await h.start_worker(flow=True)
    done = await h.wait_job(token, job_id, {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "succeeded", done
    assert not await h.svc.redis.exists(keys.flow_paused_flag(h.settings.flow_account))
