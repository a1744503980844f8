"""200 API jobs in flight on one worker against a slow fake Gemini API (in its own process).

Reports the worker process's RSS before and at peak, and event-loop lag (how late a 50 ms
timer fires) while every job is polling its interaction.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._env import environment, percentile
from bench._worker import quiet, worker

from veo import config, jobs
from veo.services import build_services

N = 200
DELAY = 15.0  # seconds each fake generation takes


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main() -> None:
    port = free_port()
    fake = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "veo.sandbox.gemini", "--port", str(port), "--delay", str(DELAY),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(1.5)
    import httpx

    async with httpx.AsyncClient() as client:  # the fake's own ffmpeg work is not measured
        await client.post(f"http://127.0.0.1:{port}/_fake/config",
                          json={"distinct_videos": False})
    key = "AI" + f"za-conc-{uuid.uuid4().hex}"
    try:
        async with environment(GEMINI_API_KEYS=key, GEMINI_BASE_URL=f"http://127.0.0.1:{port}",
                               VEO_POLL_SECONDS="2") as env:
            settings = config.load(env)
            svc = await build_services(settings)
            quiet()
            user = await svc.db.create_user("bench", False, "hash")
            async with worker(settings, flow=False):
                quiet()
                base_rss = rss_mb()
                lags: list[float] = []
                peak = base_rss
                stop = asyncio.Event()

                async def probe() -> None:
                    nonlocal peak
                    while not stop.is_set():
                        t = time.perf_counter()
                        await asyncio.sleep(0.05)
                        lags.append((time.perf_counter() - t - 0.05) * 1000)
                        peak = max(peak, rss_mb())

                prober = asyncio.create_task(probe())
                start = time.perf_counter()
                for i in range(N):
                    await svc.lifecycle.create(user, jobs.JobRequest(prompt=f"c{i}"),
                                               idempotency_key=None, body_hash="x")
                running_peak = 0
                while True:
                    row = await svc.db.pool.fetchrow(
                        "SELECT count(*) FILTER (WHERE status = 'running') AS r, "
                        "count(*) FILTER (WHERE status IN ('succeeded','failed')) AS d FROM jobs")
                    running_peak = max(running_peak, row["r"])
                    if row["d"] >= N:
                        break
                    await asyncio.sleep(0.2)
                elapsed = time.perf_counter() - start
                stop.set()
                await prober
                failed = await svc.db.pool.fetchval(
                    "SELECT count(*) FROM jobs WHERE status = 'failed'")
            await svc.close()
    finally:
        fake.terminate()
        await fake.wait()
    print(f"api_concurrency: {N} jobs, {running_peak} running at once, all done in "
          f"{elapsed:.1f} s (each generation {DELAY:.0f} s); failed={failed}; worker RSS "
          f"{base_rss:.0f} MB -> peak {peak:.0f} MB (+{peak - base_rss:.0f} MB); event-loop lag "
          f"p50={percentile(lags, 50):.1f} ms p99={percentile(lags, 99):.1f} ms "
          f"max={max(lags):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
