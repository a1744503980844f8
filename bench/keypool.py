"""Key-pool throughput: K keys, each limited by the fake Gemini API to R creates per window W
(a per-minute quota scaled down to seconds). Jobs are submitted faster than the keys allow;
the pool must keep every key busy without failing a job.

Prints achieved throughput against the ideal K*R/W. Target: >= 90%, zero failed jobs.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._env import environment
from bench._worker import quiet, worker

from veo import config, jobs, lifecycle
from veo.sandbox.gemini import FakeGemini
from veo.services import build_services

K, R, W = 4, 5, 2.0  # keys, creates per window per key, window seconds
N = 120  # jobs


async def main() -> None:
    fake = FakeGemini()
    await fake.start()
    keys = [f"AIza-bench-{i}-{uuid.uuid4().hex}" for i in range(K)]
    for k in keys:
        fake.key(k, quota=R, window=W)
    async with environment(GEMINI_API_KEYS=",".join(keys), GEMINI_BASE_URL=fake.url,
                           VEO_POLL_SECONDS="0.05", VEO_RECONCILE_SECONDS="0.1",
                           VEO_KEY_COOLDOWN_SECONDS="0.25", VEO_KEY_COOLDOWN_MAX_SECONDS="1",
                           VEO_HEARTBEAT_SECONDS="1") as env:
        settings = config.load(env)
        svc = await build_services(settings)
        quiet()
        user = await svc.db.create_user("bench", False, "hash")
        async with worker(settings, flow=False):
            quiet()
            start = time.perf_counter()
            ids = []
            for i in range(N):
                job, _ = await lifecycle.create_job(svc, user, jobs.JobRequest(prompt=f"k{i}"),
                                                    idempotency_key=None, body_hash="x")
                ids.append(job["id"])
            while True:
                rows = await svc.db.pool.fetch(
                    "SELECT status, count(*) AS n FROM jobs GROUP BY status")
                counts = {r["status"]: r["n"] for r in rows}
                if counts.get("succeeded", 0) + counts.get("failed", 0) >= N:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
        await svc.close()
    await fake.stop()
    ok_creates = [r for r in fake.creates() if r["at"] >= 0]
    rejected = sum(1 for _ in ok_creates) - N
    # the first window's quota is free at t=0; after that the keys admit K*R per W
    ideal = (math.ceil(N / (K * R)) - 1) * W
    ratio = ideal / elapsed
    print(f"keypool: K={K} keys x R={R}/{W:.0f}s, {N} jobs in {elapsed:.2f} s "
          f"(ideal {ideal:.1f} s): {N / elapsed:.1f} jobs/s vs ideal {K * R / W:.1f}/s "
          f"= {ratio:.0%}; failed={counts.get('failed', 0)}; 429s absorbed={rejected} "
          f"(target >= 90%, 0 failed) "
          f"{'OK' if ratio >= 0.9 and not counts.get('failed') else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
