"""The Flow backend end to end through the worker: real Chromium drives the fake generation-C
Flow site; the account's lease, login expiry and resume, failure classes with debug files,
rate limits that rest the account, the canary, continuity and finals on Flow."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest

from tests.harness import Harness, add_key, fetch_output, new_key, png, submit, upload
from veo import flow_state, media, names
from veo.sandbox import mp4
from veo.sandbox.flow import FakeFlow


async def test_text_and_frames_variants_land_in_their_slots(flow_harness: Harness,
                                                            fake_flow: FakeFlow) -> None:
    h = flow_harness
    _, token = await h.user("flowuser")
    red, blue = png((200, 10, 10)), png((10, 10, 200))
    first, last = await upload(h, token, red), await upload(h, token, blue)
    await h.start_worker(flow=True)
    job_id = await submit(h, token, {
        "number_of_videos": 2, "aspect_ratio": "9:16", "duration_seconds": 6,
        "model": "veo-3.1-fast",
        "clips": [{"prompt": "flow clip zero"},
                  {"prompt": "flow clip one", "first_frame": first["id"],
                   "last_frame": last["id"]},
                  {"prompt": "flow clip two"}]}, backend="flow")
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
        assert ident["model"] == "Veo 3.1 - Fast" and ident["duration"] == 6
        seen.add(ident["generation"])
        if clip == 1:
            assert ident["mode"] == "frames"
            assert ident["first_frame_sha256"] == hashlib.sha256(red).hexdigest()
            assert ident["last_frame_sha256"] == hashlib.sha256(blue).hexdigest()
        # the poster the page showed beside the video is kept as the output's poster
        poster = await fetch_output(h, token, out["poster_url"])
        assert poster[:3] == b"\xff\xd8\xff"
        assert out["duration_seconds"] == pytest.approx(6.0, abs=0.1)
    assert len(seen) == 6  # six different videos: no tile was downloaded twice
    assert len(fake_flow.submits) == 3
    flow = h.worker.ctx["backends"]["flow"]  # type: ignore[union-attr]
    assert flow.browser.launches == 1  # type: ignore[attr-defined]
    # the worker that drives the account holds its lease, and health says which one
    health = (await h.http.get("/api/health")).json()
    assert health["backends"]["flow"]["driver"] == h.worker.ctx["worker_id"]  # type: ignore[union-attr]


@pytest.mark.parametrize(("marker", "kind", "retryable"), [
    ("[policy]", "policy", False),
    ("[generic]", "generation_failed", True),
])
async def test_failures_are_classified_with_debug_files(
        flow_harness: Harness, fake_flow: FakeFlow, marker: str, kind: str,
        retryable: bool) -> None:
    h = flow_harness
    _, token = await h.user(f"fail-{kind}")
    await h.start_worker(flow=True)
    job_id = await submit(h, token, {"prompt": f"bad clip {marker}", "backend": "flow"})
    body: dict[str, Any] = {}
    for _ in range(600):
        body = (await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))).json()
        if body["error"] or body["status"] == "failed":
            break
        await asyncio.sleep(0.1)
    err = body["error"] or body["clips"][0]["error"]
    assert err["code"] == kind and err["retryable"] is retryable, body
    debug = err["details"]["debug"]
    assert debug["screenshot"].startswith(f"debug/{job_id}/")
    assert await h.svc.storage.head(debug["screenshot"]) is not None
    assert await h.svc.storage.head(debug["html"]) is not None


async def test_rate_limit_rests_the_account_instead_of_retrying(
        flow_harness: Harness, fake_flow: FakeFlow) -> None:
    h = flow_harness
    _, token = await h.user("rested")
    await h.start_worker(flow=True)
    slow = await submit(h, token, {"prompt": "too quick [unusual]", "backend": "flow"})
    body = await h.wait_job(token, slow, {"paused"}, timeout=60)
    assert body["paused_reason"] == "flow_rate_limited" and body["attempts"] == 0
    submits = len(fake_flow.submits)
    waiting = await submit(h, token, {"prompt": "next in line", "backend": "flow"})
    other = await h.wait_job(token, waiting, {"paused"}, timeout=30)
    assert other["paused_reason"] == "flow_rate_limited"
    await asyncio.sleep(1.0)
    assert len(fake_flow.submits) == submits  # no retry storm while the account rests
    acct = await h.svc.db.flow_account(h.settings.flow_account)
    assert acct is not None and acct.cooling_until is not None and acct.cool_streak == 1
    health = (await h.http.get("/api/health")).json()
    assert health["backends"]["flow"]["cooling_until"] is not None
    # one alert for the cause, in the outbox
    n = await h.svc.db.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE kind = 'alert' AND payload->>'kind' = "
        "'flow_account_cooling' AND payload->>'scope' = $1", h.settings.flow_account)
    assert n == 1
    # when the rest ends the jobs resume by themselves (the marked one would only fail again)
    await h.http.post(f"/api/jobs/{slow}/cancel", headers=h.auth(token))
    await h.svc.db.pool.execute("UPDATE flow_accounts SET cooling_until = now() "
                                "WHERE account = $1", h.settings.flow_account)
    done = await h.wait_job(token, waiting, {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "succeeded", done


@pytest.mark.parametrize("flow_harness", [{"FLOW_COOLDOWN_SECONDS": "30"}], indirect=True)
async def test_insufficient_credits_fails_clearly(flow_harness: Harness,
                                                  fake_flow: FakeFlow) -> None:
    h = flow_harness
    fake_flow.credits = 0
    _, token = await h.user("broke")
    await h.start_worker(flow=True)
    job_id = await submit(h, token, {"prompt": "no money", "backend": "flow"})
    done = await h.wait_job(token, job_id, {"failed"}, timeout=60)
    assert done["error"]["code"] == "insufficient_credits", done
    assert done["error"]["retryable"] is False and done["attempts"] == 1


async def test_login_expiry_pauses_batch_and_resumes_from_bucket(
        flow_harness: Harness, fake_flow: FakeFlow, fake_gemini: object) -> None:
    h = flow_harness
    _, token = await h.user("batcher")
    _, api_token = await h.user("apiuser")
    await add_key(h, api_token, new_key())
    await h.start_worker(flow=True)
    first = await submit(h, token, {"prompt": "before expiry", "backend": "flow"})
    assert (await h.wait_job(token, first, {"succeeded", "failed"}, 60))["status"] == "succeeded"
    fake_flow.expire_all()
    ids = [await submit(h, token, {"prompt": f"batch {i}", "backend": "flow"})
           for i in range(5)]
    for job_id in ids:
        body = await h.wait_job(token, job_id, {"paused"}, timeout=60)
        assert body["flow_needs_auth"] is True and body["paused_reason"] == "flow_needs_auth"
        assert body["attempts"] == 0  # no try was spent
    queue = (await h.http.get("/api/flow/queue/status")).json()
    assert queue["paused"] is True and queue["waiting_auth"] >= 5
    # API jobs keep running meanwhile
    api_job = await submit(h, api_token, {"prompt": "api still works"})
    assert (await h.wait_job(api_token, api_job, {"succeeded"}, 30))["status"] == "succeeded"
    # a plaintext state written straight into the bucket is noticed and resumes everything
    raw = json.dumps(fake_flow.storage_state(fake_flow.new_session())).encode()
    await h.svc.storage.put_bytes(h.settings.flow_storage_state_key, raw, "application/json")
    for job_id in ids:
        done = await h.wait_job(token, job_id, {"succeeded", "failed"}, timeout=120)
        assert done["status"] == "succeeded", done
    stored = await h.svc.storage.get_bytes(h.settings.flow_storage_state_key)
    assert stored.startswith(b"v1.")  # re-written encrypted
    assert (await h.http.get("/api/flow/queue/status")).json()["paused"] is False


@pytest.mark.parametrize("flow_harness", [{"FLOW_MAX_CONCURRENT": "2"}], indirect=True)
async def test_max_concurrent_respected(flow_harness: Harness, fake_flow: FakeFlow) -> None:
    h = flow_harness
    fake_flow.delay = 1.0
    _, token = await h.user("parallel")
    await h.start_worker(flow=True)
    ids = [await submit(h, token, {"prompt": f"p{i}", "backend": "flow"}) for i in range(4)]
    for job_id in ids:
        assert (await h.wait_job(token, job_id, {"succeeded", "failed"}, 120))["status"] \
            == "succeeded"
    flow = h.worker.ctx["backends"]["flow"]  # type: ignore[union-attr]
    assert flow.peak_running == 2  # type: ignore[attr-defined]


async def test_login_stored_while_no_worker_ran_resumes_at_startup(
        flow_harness: Harness, fake_flow: FakeFlow) -> None:
    h = flow_harness
    _, token = await h.user("late")
    await h.svc.redis.set(names.flow_paused_flag(h.settings.flow_account), "1")
    job_id = await submit(h, token, {"prompt": "waits for a login", "backend": "flow"})
    await flow_state.write(h.svc.storage, h.svc.box, h.settings.flow_account,
                           fake_flow.storage_state(), h.settings.flow_storage_state_key)
    await h.start_worker(flow=True)
    done = await h.wait_job(token, job_id, {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "succeeded", done
    assert not await h.svc.redis.exists(names.flow_paused_flag(h.settings.flow_account))


async def test_continuity_and_final_on_flow(flow_harness: Harness, fake_flow: FakeFlow) -> None:
    h = flow_harness
    _, token = await h.user("flowfilm")
    await h.start_worker(flow=True)
    job_id = await submit(h, token, {
        "clips": [{"prompt": "first shot"}, {"prompt": "second shot"}], "backend": "flow",
        "duration_seconds": 4, "continuity": "chain", "final": {"transition": "cut"}})
    done = await h.wait_job(token, job_id, {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done
    # clip 1 was given clip 0's last frame as an uploaded start frame
    path = h.svc.storage.path(f"outputs/{job_id}/0-0.mp4")  # type: ignore[attr-defined]
    expected = hashlib.sha256(await media.last_frame(path)).hexdigest()
    ident = mp4.identify(await fetch_output(h, token, done["outputs"][1]["url"]))
    assert ident is not None and ident["mode"] == "frames"
    assert ident["first_frame_sha256"] == expected
    for _ in range(300):
        body = (await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))).json()
        if body["final"]["status"] == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert body["final"]["duration_seconds"] == pytest.approx(8.0, abs=0.15)


@pytest.mark.parametrize("flow_harness", [{"FLOW_HEADLESS": "false"}], indirect=True)
async def test_headed_worker_under_its_own_xvfb_with_canary(flow_harness: Harness,
                                                           fake_flow: FakeFlow) -> None:
    """The production path: headed Chromium on a virtual display the worker starts itself,
    against a site that refuses headless browsers; the canary walks it and spends nothing."""
    h = flow_harness
    fake_flow.refuse_headless = True
    _, token = await h.user("headed")
    await h.start_worker(flow=True)
    job_id = await submit(h, token, {"prompt": "a headed run", "backend": "flow"})
    done = await h.wait_job(token, job_id, {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done
    flow = h.worker.ctx["backends"]["flow"]  # type: ignore[union-attr]
    assert not flow.browser.headless  # type: ignore[attr-defined]
    submits = len(fake_flow.submits)
    report = await flow.canary()  # type: ignore[attr-defined]
    assert report.ok, report
    assert len(fake_flow.submits) == submits  # walked up to submit, never through it
    health = (await h.http.get("/api/health")).json()
    assert health["backends"]["flow"]["canary"]["ok"] is True
