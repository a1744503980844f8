"""Two workers, two Flow accounts, side by side: each runs only its own account's jobs, and a
login expiry pauses only the account it happened to."""

from __future__ import annotations

from pathlib import Path

from tests.harness import CHROMIUM, Harness, worker_env
from veo import config, flow_state, lifecycle
from veo.sandbox.flow import FakeFlow
from veo.worker import settings as worker_settings


async def test_accounts_pause_independently(harness: Harness, fake_flow: FakeFlow,
                                            tmp_path: Path) -> None:
    h = harness
    # two Flow sites stand in for two Google accounts (each with its own sessions)
    other = FakeFlow()
    other.delay = 0.3
    await other.start()
    fake_flow.delay = 0.3
    base = {"FLOW_BACKEND_ENABLED": "true", "FLOW_BROWSER_EXECUTABLE": CHROMIUM,
            "FLOW_JOB_TIMEOUT": "30", "FLOW_STATE_POLL_SECONDS": "0.3"}
    settings_a = config.load({**worker_env(h), **base, "FLOW_ACCOUNT": "alpha",
                                   "FLOW_BASE_URL": fake_flow.home})
    settings_b = config.load({**worker_env(h), **base, "FLOW_ACCOUNT": "beta",
                                   "FLOW_BASE_URL": other.home})
    await flow_state.write(h.svc.storage, h.svc.box, "alpha", fake_flow.storage_state())
    await flow_state.write(h.svc.storage, h.svc.box, "beta", other.storage_state())
    _, token = await h.user("accounts")
    user_id = await h.svc.db.pool.fetchval("SELECT id FROM users WHERE name = 'accounts'")

    async def job(account: str, prompt: str) -> str:
        row, _ = await h.svc.db.create_job(
            user_id=user_id, backend="flow", requested_backend="flow",
            model="veo-3.1-fast-generate-preview", params={"number_of_videos": 1},
            webhook_url=None, idempotency_key=None, request_hash=None, flow_account=account,
            clips=[(prompt, None, None)])
        await lifecycle.enqueue(h.svc, row)
        return str(row["id"])

    try:
        async with worker_settings.in_process(settings_a, flow=True), \
                worker_settings.in_process(settings_b, flow=True):
            first = [await job("alpha", "alpha one"), await job("beta", "beta one")]
            for job_id in first:
                assert (await h.wait_job(token, job_id, {"succeeded", "failed"}, 60))[
                    "status"] == "succeeded"
            # each account's clip was made on its own site
            assert [s["prompt"] for s in fake_flow.submits] == ["alpha one"]
            assert [s["prompt"] for s in other.submits] == ["beta one"]
            fake_flow.expire_all()  # alpha's login dies
            a2, b2 = await job("alpha", "alpha two"), await job("beta", "beta two")
            paused = await h.wait_job(token, a2, {"paused", "failed"}, 60)
            assert paused["status"] == "paused" and paused["paused_reason"] == "flow_needs_auth"
            done = await h.wait_job(token, b2, {"succeeded", "failed"}, 60)
            assert done["status"] == "succeeded"  # beta never noticed
            assert await lifecycle.flow_paused(h.svc, "alpha")
            assert not await lifecycle.flow_paused(h.svc, "beta")
            await flow_state.write(h.svc.storage, h.svc.box, "alpha", fake_flow.storage_state())
            assert (await h.wait_job(token, a2, {"succeeded", "failed"}, 60))["status"] \
                == "succeeded"
    finally:
        await other.stop()

