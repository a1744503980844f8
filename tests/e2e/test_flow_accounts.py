"""Flow accounts and their drivers: two accounts side by side pause independently, and two
workers on one account never drive it at once (the lease), the second taking over when the
first stops."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.harness import CHROMIUM, Harness, worker_env
from veo import config, flow_state, names
from veo.jobs import ClipSpec
from veo.records import Params
from veo.sandbox.flow import FakeFlow
from veo.worker import settings as worker_settings

BASE = {"FLOW_BACKEND_ENABLED": "true", "FLOW_BROWSER_EXECUTABLE": CHROMIUM,
        "FLOW_JOB_TIMEOUT": "30", "FLOW_STATE_POLL_SECONDS": "0.3", "FLOW_HEADLESS": "true",
        "FLOW_CANARY_MINUTES": "0", "FLOW_LEASE_SECONDS": "1.5"}


async def _job(h: Harness, user_id: str, account: str, prompt: str) -> str:
    row = await h.svc.db.create_job(
        user_id=user_id, backend="flow", requested_backend="flow", model="veo-3.1-fast",
        params=Params(), webhook_url=None, idempotency_key=None, request_hash=None,
        flow_account=account, continuity="none", final_options=None,
        clips=[ClipSpec(prompt=prompt)])
    from veo import queue

    await queue.enqueue(h.svc.redis, row)
    return row.id


async def test_accounts_pause_independently(harness: Harness, fake_flow: FakeFlow,
                                            tmp_path: Path) -> None:
    h = harness
    # two Flow sites stand in for two Google accounts (each with its own sessions)
    other = FakeFlow()
    await other.start()
    settings_a = config.load({**worker_env(h), **BASE, "FLOW_ACCOUNT": "alpha",
                              "FLOW_BASE_URL": fake_flow.home})
    settings_b = config.load({**worker_env(h), **BASE, "FLOW_ACCOUNT": "beta",
                              "FLOW_BASE_URL": other.home})
    await flow_state.write(h.svc.storage, h.svc.box, "alpha", fake_flow.storage_state())
    await flow_state.write(h.svc.storage, h.svc.box, "beta", other.storage_state())
    user, token = await h.user("accounts")
    life = h.svc.lifecycle
    try:
        async with worker_settings.in_process(settings_a, flow=True), \
                worker_settings.in_process(settings_b, flow=True):
            first = [await _job(h, user.id, "alpha", "alpha one"),
                     await _job(h, user.id, "beta", "beta one")]
            for job_id in first:
                assert (await h.wait_job(token, job_id, {"succeeded", "failed"}, 60))[
                    "status"] == "succeeded"
            # each account's clip was made on its own site
            assert [s["prompt"] for s in fake_flow.submits] == ["alpha one"]
            assert [s["prompt"] for s in other.submits] == ["beta one"]
            fake_flow.expire_all()  # alpha's login dies
            a2 = await _job(h, user.id, "alpha", "alpha two")
            b2 = await _job(h, user.id, "beta", "beta two")
            paused = await h.wait_job(token, a2, {"paused", "failed"}, 60)
            assert paused["status"] == "paused" and paused["paused_reason"] == "flow_needs_auth"
            done = await h.wait_job(token, b2, {"succeeded", "failed"}, 60)
            assert done["status"] == "succeeded"  # beta never noticed
            assert await life.flow_paused("alpha") and not await life.flow_paused("beta")
            await flow_state.write(h.svc.storage, h.svc.box, "alpha", fake_flow.storage_state())
            assert (await h.wait_job(token, a2, {"succeeded", "failed"}, 60))["status"] \
                == "succeeded"
    finally:
        await other.stop()


async def test_one_driver_per_account(harness: Harness, fake_flow: FakeFlow) -> None:
    h = harness
    env = {**worker_env(h), **BASE, "FLOW_ACCOUNT": "shared", "FLOW_BASE_URL": fake_flow.home}
    await flow_state.write(h.svc.storage, h.svc.box, "shared", fake_flow.storage_state())
    user, token = await h.user("leased")
    fake_flow.delay = 0.6
    managers = {name: worker_settings.in_process(config.load(env), flow=True)
                for name in ("one", "two")}
    workers = {name: await cm.__aenter__() for name, cm in managers.items()}
    try:
        ids = [await _job(h, user.id, "shared", f"shared {i}") for i in range(4)]
        drivers: set[str] = set()
        peak = 0
        bodies: list[dict[str, object]] = []
        for _ in range(400):
            running = [w for w in workers.values() if "flow" in w.ctx["backends"]]
            drivers |= {w.ctx["worker_id"] for w in running}
            peak = max(peak, len(running))
            bodies = [(await h.http.get(f"/api/jobs/{i}", headers=h.auth(token))).json()
                      for i in ids]
            if all(b["status"] == "succeeded" for b in bodies):
                break
            await asyncio.sleep(0.05)
        assert all(b["status"] == "succeeded" for b in bodies), bodies
        assert peak == 1 and len(drivers) == 1  # never two browsers on one account
        holder = (await h.svc.redis.get(names.flow_lease("shared"))).decode()
        assert holder in drivers
        # the driving worker stops: the other one takes the account over and serves it
        first = next(n for n, w in workers.items() if w.ctx["worker_id"] == holder)
        second = next(n for n in workers if n != first)
        await managers.pop(first).__aexit__(None, None, None)
        later = await _job(h, user.id, "shared", "after the handover")
        done = await h.wait_job(token, later, {"succeeded", "failed"}, 60)
        assert done["status"] == "succeeded", done
        assert "flow" in workers[second].ctx["backends"]
        new_holder = (await h.svc.redis.get(names.flow_lease("shared"))).decode()
        assert new_holder == workers[second].ctx["worker_id"]
    finally:
        for cm in managers.values():
            await cm.__aexit__(None, None, None)
