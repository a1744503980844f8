"""Dispatch latency: from ``enqueue`` to the worker starting the job (claim included).

Prints p50/p99 in milliseconds over sequential jobs (no queueing behind other jobs), with the
real arq worker, PostgreSQL and Redis. Target: p50 <= 50 ms, p99 <= 200 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._env import environment, percentile
from bench._worker import quiet, worker

from veo import config, lifecycle
from veo.services import Services, build_services, token_hash
from veo.worker.context import ClipRun

N = 200


class Probe:
    name = "api"
    clip_concurrency = 1

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.event = asyncio.Event()

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def blocked(self, job: dict) -> None:  # type: ignore[type-arg]
        return None

    async def run_clip(self, run: ClipRun) -> None:
        self.started[run.job_id] = time.perf_counter()
        self.event.set()


async def main() -> None:
    async with environment() as env:
        settings = config.load(env)
        svc = await build_services(settings)
        user = await svc.db.create_user("bench", False, token_hash("x"))
        async with worker(settings, flow=False) as w:
            quiet()
            probe = Probe()
            w.ctx["backends"]["api"] = probe
            latencies = await measure(svc, user, probe)
        await svc.close()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(f"dispatch: n={N} p50={p50:.1f} ms p99={p99:.1f} ms max={max(latencies):.1f} ms "
          f"(targets: p50<=50, p99<=200) {'OK' if p50 <= 50 and p99 <= 200 else 'MISSED'}")


async def measure(svc: Services, user: dict, probe: Probe) -> list[float]:  # type: ignore[type-arg]
    latencies = []
    for i in range(N):
        job, _ = await svc.db.create_job(
            user_id=user["id"], backend="api", requested_backend="api",
            model="veo-3.1-fast-generate-preview", params={}, webhook_url=None,
            idempotency_key=None, request_hash=None, flow_account=None,
            clips=[(f"p{i}", None, None)])
        probe.event.clear()
        t0 = time.perf_counter()
        await lifecycle.enqueue(svc, job)
        await asyncio.wait_for(probe.event.wait(), 10)
        latencies.append((probe.started[job["id"]] - t0) * 1000)
        await asyncio.sleep(0.005)
    return latencies


if __name__ == "__main__":
    asyncio.run(main())
