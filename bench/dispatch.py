"""Dispatch latency: from ``Lifecycle.create`` (what ``POST /api/jobs`` calls: validate, route,
insert, enqueue) to the worker's backend starting the job's first clip, the claim included.

Prints p50/p99 in milliseconds over sequential jobs (no queueing behind other jobs), with the
real arq worker, PostgreSQL and Redis. Target: p50 <= 10 ms, p99 <= 50 ms.
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

from veo import config, jobs
from veo.records import Job, User
from veo.services import Services, build_services, token_hash
from veo.worker.context import ClipRun

N = 200
TARGET_P50, TARGET_P99 = 10.0, 50.0


class Probe:
    """A backend that only notes when a clip starts."""

    name = "api"
    clip_concurrency = 1

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.event = asyncio.Event()

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def blocked(self, job: Job) -> str | None:
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
    ok = p50 <= TARGET_P50 and p99 <= TARGET_P99
    print(f"dispatch: n={N} p50={p50:.1f} ms p99={p99:.1f} ms max={max(latencies):.1f} ms "
          f"(targets: p50<={TARGET_P50:g}, p99<={TARGET_P99:g}) {'OK' if ok else 'MISSED'}")


async def measure(svc: Services, user: User, probe: Probe) -> list[float]:
    latencies = []
    for i in range(N):
        body = f'{{"prompt": "p{i}"}}'.encode()
        req = jobs.JobRequest(prompt=f"p{i}")
        probe.event.clear()
        t0 = time.perf_counter()
        job, created = await svc.lifecycle.create(user, req, idempotency_key=None,
                                                  body_hash=jobs.request_hash(body),
                                                  has_usable_key=True)
        assert created
        await asyncio.wait_for(probe.event.wait(), 10)
        latencies.append((probe.started[job.id] - t0) * 1000)
        await asyncio.sleep(0.005)
    return latencies


if __name__ == "__main__":
    asyncio.run(main())
