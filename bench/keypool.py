"""Key-pool throughput: K keys, each limited by the fake Gemini API to R creates per window W
(a per-minute quota scaled down to seconds). Jobs are submitted faster than the keys allow;
the pool must keep every key busy without failing a job and without knocking on keys it could
know are spent.

Prints achieved throughput against the keys' combined quota, and the refused (429) create
calls per job. Targets: >= 95% of the quota, 0 failed jobs, <= 0.2 refused calls per job.
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

from veo import config, jobs
from veo.sandbox.gemini import FakeGemini
from veo.services import build_services

K, R, W = 4, 5, 2.0  # keys, creates per window per key, window seconds
N = 120  # jobs


async def main() -> None:
    fake = FakeGemini()
    fake.distinct_videos = False  # the fake's own ffmpeg work is not what is measured
    await fake.start()
    keys = ["AI" + f"za-bench-{i}-{uuid.uuid4().hex}" for i in range(K)]
    for k in keys:
        fake.key(k, quota=R, window=W)
    async with environment(GEMINI_API_KEYS=",".join(keys), GEMINI_BASE_URL=fake.url,
                           VEO_POLL_SECONDS="0.05", VEO_RECONCILE_SECONDS="0.1",
                           VEO_KEY_WINDOW_SECONDS=str(W), VEO_KEY_COOLDOWN_SECONDS="0.25",
                           VEO_KEY_COOLDOWN_MAX_SECONDS="1",
                           VEO_HEARTBEAT_SECONDS="1") as env:
        settings = config.load(env)
        svc = await build_services(settings)
        quiet()
        user = await svc.db.create_user("bench", False, "hash")
        async with worker(settings, flow=False):
            quiet()
            start = time.perf_counter()
            for i in range(N):
                await svc.lifecycle.create(user, jobs.JobRequest(prompt=f"k{i}",
                                                                 duration_seconds=4),
                                           idempotency_key=None, body_hash="x")
            while True:
                rows = await svc.db.pool.fetch(
                    "SELECT status, count(*) AS n FROM jobs GROUP BY status")
                counts = {r["status"]: r["n"] for r in rows}
                if counts.get("succeeded", 0) + counts.get("failed", 0) >= N:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
            limits = [r["window_limit"] for r in await svc.db.pool.fetch(
                "SELECT window_limit FROM api_keys ORDER BY id")]
        await svc.close()
    await fake.stop()
    refused = sum(1 for r in fake.creates() if r.get("status") == 429)
    if "-v" in sys.argv:
        t0 = min(r["at"] for r in fake.creates())
        ok_at = sorted(r["at"] - t0 for r in fake.creates() if r.get("status") == 200)
        print("learned limits", limits)
        print("accepted creates per window:",
              [sum(1 for t in ok_at if i * W <= t < (i + 1) * W) for i in range(12)])
    # the first window's quota is free at t=0; after that the keys admit K*R per W
    ideal = (math.ceil(N / (K * R)) - 1) * W
    ratio = ideal / elapsed
    per_job = refused / N
    ok = ratio >= 0.95 and not counts.get("failed") and per_job <= 0.2
    print(f"keypool: K={K} keys x R={R}/{W:.0f}s, {N} jobs in {elapsed:.2f} s "
          f"(ideal {ideal:.1f} s) = {ratio:.0%} of the keys' quota; failed="
          f"{counts.get('failed', 0)}; refused (429) calls {refused} = {per_job:.2f} per job "
          f"(targets >= 95%, 0 failed, <= 0.2 per job) {'OK' if ok else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
