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

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._env import environment
from bench._worker import quiet, worker
from tests.harness import free_port

from veo import config, jobs
from veo.keypool import KeyPool
from veo.services import build_services

K, R, W = 4, 5, 2.0  # keys, creates per window per key, window seconds
N = 120  # jobs


async def fake_process() -> tuple[asyncio.subprocess.Process, str]:
    """The fake Gemini API in a process of its own, as Google is: its CPU is not the worker's."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "veo.sandbox.gemini", "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(f"{url}/_fake/requests")
                return proc, url
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError("the fake Gemini API did not start")


async def main() -> None:
    proc, url = await fake_process()
    keys = ["AI" + f"za-bench-{i}-{uuid.uuid4().hex}" for i in range(K)]
    async with httpx.AsyncClient(base_url=url) as client:
        await client.post("/_fake/keys", json={k: {"quota": R, "window": W} for k in keys})
        # the fake's own ffmpeg work is not what is measured
        await client.post("/_fake/config", json={"distinct_videos": False})
    async with environment(GEMINI_API_KEYS=",".join(keys), GEMINI_BASE_URL=url,
                           VEO_POLL_SECONDS="0.05", VEO_RECONCILE_SECONDS="0.1",
                           VEO_KEY_WINDOW_SECONDS=str(W), VEO_KEY_COOLDOWN_SECONDS="0.25",
                           VEO_KEY_COOLDOWN_MAX_SECONDS="1",
                           VEO_HEARTBEAT_SECONDS="1") as env:
        settings = config.load(env)
        svc = await build_services(settings)
        quiet()
        user = await svc.db.create_user("bench", False, "hash")
        await KeyPool(svc.db, svc.box, settings).sync_operator_pool(keys)
        # the backlog is there before the worker starts: submissions arriving faster than the
        # keys allow is the case the pool is for, and in production they come through another
        # process (the web), not this worker's event loop
        for i in range(N):
            await svc.lifecycle.create(user, jobs.JobRequest(prompt=f"k{i}", duration_seconds=4),
                                       idempotency_key=None, body_hash="x")
        async with worker(settings, flow=False):
            quiet()
            start = time.monotonic()
            while True:
                rows = await svc.db.pool.fetch(
                    "SELECT status, count(*) AS n FROM jobs GROUP BY status")
                counts = {r["status"]: r["n"] for r in rows}
                if counts.get("succeeded", 0) + counts.get("failed", 0) >= N:
                    break
                await asyncio.sleep(0.05)  # it shares the worker's loop: look rarely
            done = time.monotonic()
            limits = [r["window_limit"] for r in await svc.db.pool.fetch(
                "SELECT window_limit FROM api_keys ORDER BY id")]
        await svc.close()
    async with httpx.AsyncClient(base_url=url) as client:
        creates = [r for r in (await client.get("/_fake/requests")).json()
                   if r["kind"] == "create"]
    proc.terminate()
    await proc.wait()
    refused = sum(1 for r in creates if r.get("status") == 429)
    # the fake stamps requests with time.monotonic(), one clock for every process here
    accepted = sorted(r["at"] for r in creates if r.get("status") == 200)
    t0 = accepted[0]
    if "-v" in sys.argv:
        ok_at = [t - t0 for t in accepted]
        print("learned limits", limits)
        print("first window's accepted creates at", [round(t, 2) for t in ok_at[:K * R]])
        for i in range(math.ceil(N / (K * R))):
            part = ok_at[i * K * R:(i + 1) * K * R]
            print(f"  creates {i * K * R}-{i * K * R + len(part) - 1}: "
                  f"{part[0] - i * W:+.2f} .. {part[-1] - i * W:+.2f} s into window {i}")
        print("refused at", [(round(r["at"] - t0, 3), r["key"][-6:]) for r in creates
                             if r.get("status") == 429])
        for key in keys:
            print("  key", key[-6:], [round(r["at"] - t0, 2) for r in creates
                                      if r["key"] == key and r.get("status") == 200])
        print("accepted creates per window:",
              [sum(1 for t in ok_at if i * W <= t < (i + 1) * W) for i in range(8)])
    # The keys' quota: K*R creates are free at the first one, then K*R more per window. A pool
    # that spends it fully makes the last create (ceil(N / (K*R)) - 1) windows after the first.
    ideal = (math.ceil(N / (K * R)) - 1) * W
    span = accepted[-1] - t0
    ratio = ideal / span
    per_job = refused / N
    ok = ratio >= 0.95 and not counts.get("failed") and per_job <= 0.2
    print(f"keypool: K={K} keys x R={R}/{W:.0f}s, {N} jobs waiting; their creates took "
          f"{span:.2f} s (ideal {ideal:.1f} s) = {ratio:.0%} of the keys' quota; failed="
          f"{counts.get('failed', 0)}; refused (429) calls {refused} = {per_job:.2f} per job "
          f"(targets >= 95%, 0 failed, <= 0.2 per job) {'OK' if ok else 'MISSED'}")
    print(f"  end to end: worker start to the last job done {done - start:.2f} s "
          f"(first create {t0 - start:.2f} s after the start, last job done "
          f"{done - accepted[-1]:.2f} s after the last create)")

if __name__ == "__main__":
    asyncio.run(main())
