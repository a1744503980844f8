"""A worker killed with SIGKILL mid-job: the next worker resumes the stored operation, and
the job completes exactly once with exactly one generation paid for."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from tests.harness import (
    CHROMIUM,
    Harness,
    add_key,
    eventually,
    fetch_output,
    new_key,
    spawn_worker,
    worker_env,
)
from veo.sandbox import mp4
from veo.sandbox.flow import FakeFlow
from veo.sandbox.gemini import FakeGemini


async def finish_with_new_worker(h: Harness, env: dict[str, str], log: Path, token: str,
                                 job_id: str, timeout: float) -> dict[str, Any]:
    """Start a fresh worker, wait for the job to end, stop the worker gracefully."""
    worker = await spawn_worker(env, log)
    try:
        return await h.wait_job(token, job_id, {"succeeded", "failed"}, timeout=timeout)
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)


async def test_sigkill_mid_job_resumes_same_operation(harness: Harness, fake_gemini: FakeGemini,
                                                      tmp_path: Path) -> None:
    h = harness
    s = h.settings
    env = worker_env(h, GEMINI_BASE_URL=fake_gemini.url, FLOW_BACKEND_ENABLED="false",
                     VEO_POLL_SECONDS="0.1")
    _, token = await h.user("crashy")
    key = new_key("crash")
    await add_key(h, token, key)
    fake_gemini.delay = 4.0
    resp = await h.http.post("/api/jobs", json={"prompt": "survive a crash"},
                             headers=h.auth(token))
    job_id = resp.json()["id"]
    log = tmp_path / "worker.log"
    first = await spawn_worker(env, log)
    try:
        await eventually(lambda: fake_gemini.creates(), 15)
        assert len(fake_gemini.creates()) == 1
        await asyncio.sleep(0.3)  # the operation name is stored before polling starts
        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
    body = (await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))).json()
    assert body["status"] == "running"  # the dead worker still holds it, on paper
    done = await finish_with_new_worker(h, env, log, token, job_id, 40)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert len(fake_gemini.creates()) == 1  # resumed polling; no second generation
    assert len(done["outputs"]) == 1
    ident = mp4.identify(await fetch_output(h, token, done["outputs"][0]["url"]))
    assert ident is not None and ident["prompt"] == "survive a crash"
    text = log.read_text()
    assert text.count('"event": "job.succeeded"') == 1
    assert '"reconciler.requeued"' in text
    assert key not in text and s.secret_key not in text  # no secret reached the logs


async def test_sigkill_mid_flow_generation_recovers(harness: Harness, fake_flow: FakeFlow,
                                                    tmp_path: Path) -> None:
    from veo import flow_state

    h = harness
    account = "crashflow"
    env = worker_env(h, FLOW_BACKEND_ENABLED="true", FLOW_BASE_URL=fake_flow.home,
                     FLOW_BROWSER_EXECUTABLE=CHROMIUM, FLOW_ACCOUNT=account,
                     FLOW_STATE_POLL_SECONDS="0.5", FLOW_HEADLESS="true",
                     FLOW_CANARY_MINUTES="0", FLOW_LEASE_SECONDS="2")
    await flow_state.write(h.svc.storage, h.svc.box, account, fake_flow.storage_state())
    _, token = await h.user("flowcrash")
    fake_flow.delay = 3.0
    # the web routes to Flow for this user (no key); the job carries the worker's account
    from veo import queue
    from veo.jobs import ClipSpec
    from veo.records import Params

    job = await h.svc.db.create_job(
        user_id=(await h.svc.db.pool.fetchval("SELECT id FROM users WHERE name = 'flowcrash'")),
        backend="flow", requested_backend="flow", model="veo-3.1-fast", params=Params(),
        webhook_url=None, idempotency_key=None, request_hash=None, flow_account=account,
        continuity="none", final_options=None, clips=[ClipSpec(prompt="crash in the middle")])
    await queue.enqueue(h.svc.redis, job)
    log = tmp_path / "flow-worker.log"
    first = await spawn_worker(env, log)
    try:
        await eventually(lambda: fake_flow.submits, 30)
        assert len(fake_flow.submits) == 1
        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
    fake_flow.delay = 0.3
    done = await finish_with_new_worker(h, env, log, token, job.id, 60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and len(done["outputs"]) == 1
    ident = mp4.identify(await fetch_output(h, token, done["outputs"][0]["url"]))
    assert ident is not None and ident["prompt"] == "crash in the middle"
    # Flow cannot resume a half-made video: the second run made a new one, and used it
    assert len(fake_flow.submits) == 2 and ident["generation"] == fake_flow.downloads[-1]


async def test_sigterm_hands_running_job_back(harness: Harness, fake_gemini: FakeGemini,
                                              tmp_path: Path) -> None:
    """Graceful shutdown: a job still running when the grace period ends goes back to the
    queue (not failed), and the next worker finishes it on the same operation."""
    h = harness
    env = worker_env(h, GEMINI_BASE_URL=fake_gemini.url, FLOW_BACKEND_ENABLED="false",
                     VEO_POLL_SECONDS="0.1")
    _, token = await h.user("graceful")
    await add_key(h, token, new_key("term"))
    fake_gemini.delay = 40.0  # longer than the 10 s grace period
    job_id = (await h.http.post("/api/jobs", json={"prompt": "patience"},
                                headers=h.auth(token))).json()["id"]
    log = tmp_path / "term.log"
    first = await spawn_worker(env, log)
    await eventually(lambda: fake_gemini.creates(), 15)
    await asyncio.sleep(0.3)
    first.send_signal(signal.SIGTERM)
    await asyncio.wait_for(first.wait(), 30)
    body = (await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))).json()
    assert body["status"] == "queued" and body["error"] is None, body
    assert body["attempts"] == 0  # handed back by a stopping worker: no attempt spent
    assert '"reason": "shutdown"' in log.read_text()
    for op in fake_gemini.operations.values():
        op.ready_at = 0
    done = await finish_with_new_worker(h, env, log, token, job_id, 40)
    assert done["status"] == "succeeded" and len(fake_gemini.creates()) == 1
