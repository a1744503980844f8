"""Server-Sent Events at scale: one web process (``veo serve``, its own OS process) holding
1,000 open ``/api/jobs/{id}/events`` streams.

Prints the web process's resident memory (idle, and with every stream open), the number of
Redis subscriptions it holds (one, whatever the number of streams), and the event latency: from
the moment a job's change is published to the moment a stream delivers it (p50/p99/max over
every stream of every changed job).

Streams are read by a small raw-socket client in this process (lighter than an HTTP library,
so the client does not starve the server of the machine's cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._env import environment, percentile
from tests.harness import free_port

from veo import config, events, jobs, names
from veo.records import Params
from veo.services import Services, build_services, token_hash

STREAMS = 1000
USERS = 100  # ten streams per user (the per-user cap is VEO_SSE_STREAMS_PER_USER)
ROUNDS = 30  # changes published; each changes JOBS_PER_ROUND jobs at once
JOBS_PER_ROUND = 10
GAP = 0.2  # seconds between rounds


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Client:
    """One SSE stream over a raw connection; notes when each progress value arrives."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.seen: dict[int, float] = {}
        self.opened = asyncio.Event()
        self.status = 0

    async def run(self, port: int, token: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/jobs/{self.job_id}/events HTTP/1.1\r\nHost: bench\r\n"
                     f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                     .encode())
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.status = int(head.split(b" ", 2)[1])
            while True:
                line = await reader.readline()
                if not line:
                    return
                if line.startswith(b"data: {"):
                    # chunked transfer: the data line is whole within one chunk
                    progress = json.loads(line[6:])["progress"]
                    self.seen.setdefault(progress, time.perf_counter())
                    self.opened.set()
        finally:
            self.opened.set()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def main() -> None:
    async with environment(VEO_SSE_STREAMS_PER_USER=str(STREAMS // USERS)) as env:
        settings = config.load(env)
        svc = await build_services(settings)
        users, job_ids = [], []
        for u in range(USERS):
            token = f"veo_bench_sse_token_{u:04d}"
            user = await svc.db.create_user(f"viewer{u}", False, token_hash(token))
            job = await svc.db.create_job(
                user_id=user.id, backend="api", requested_backend="api",
                model="gemini-omni-1.1-flash", params=Params(), webhook_url=None,
                idempotency_key=None, request_hash=None, flow_account=None,
                continuity="none", final_options=None,
                clips=[jobs.ClipSpec(prompt=f"watched {u}")])
            await svc.db.pool.execute("UPDATE jobs SET status = 'running', started_at = now() "
                                      "WHERE id = $1", job.id)
            users.append(token)
            job_ids.append(job.id)
        port = free_port()
        web_env = {**os.environ, **env, "PORT": str(port), "LOG_FORMAT": "json"}
        exe = str(Path(sys.executable).parent / "veo")
        web = await asyncio.create_subprocess_exec(exe, "serve", "--port", str(port),
                                                   env=web_env, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
        try:
            await wait_listening(port)
            await asyncio.sleep(1.0)
            idle = rss_kib(web.pid)
            clients = [Client(job_ids[i % USERS]) for i in range(STREAMS)]
            tasks = [asyncio.create_task(c.run(port, users[i % USERS]))
                     for i, c in enumerate(clients)]
            opened = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(c.opened.wait() for c in clients)), 120)
            open_seconds = time.perf_counter() - opened
            refused = sum(1 for c in clients if c.status != 200)
            subs = int((await svc.redis.pubsub_numsub(names.EVENTS_CHANNEL))[0][1])
            latencies = await publish_rounds(svc, clients, job_ids)
            await asyncio.sleep(0.5)
            loaded = rss_kib(web.pid)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            web.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(web.wait(), 20)
            if web.returncode is None:
                web.kill()
                await web.wait()
            await svc.close()
    print(f"sse: streams={STREAMS} (refused {refused}) opened in {open_seconds:.1f} s; "
          f"redis subscriptions of the web process: {subs}")
    print(f"sse: web process RSS idle={idle / 1024:.1f} MiB, with {STREAMS} streams="
          f"{loaded / 1024:.1f} MiB (+{(loaded - idle) / STREAMS:.1f} KiB per stream)")
    print(f"sse: event latency over {len(latencies)} deliveries "
          f"({ROUNDS} rounds x {JOBS_PER_ROUND} jobs x {STREAMS // USERS} streams): "
          f"p50={percentile(latencies, 50):.1f} ms p99={percentile(latencies, 99):.1f} ms "
          f"max={max(latencies):.1f} ms")


async def wait_listening(port: int) -> None:
    for _ in range(300):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("veo serve did not start")


async def publish_rounds(svc: Services, clients: list[Client],
                         job_ids: list[str]) -> list[float]:
    by_job: dict[str, list[Client]] = {}
    for c in clients:
        by_job.setdefault(c.job_id, []).append(c)
    latencies: list[float] = []
    rng = random.Random(7)
    for r in range(1, ROUNDS + 1):
        changed = rng.sample(job_ids, JOBS_PER_ROUND)
        await svc.db.pool.execute("UPDATE jobs SET progress = $1 WHERE id = ANY($2::text[])",
                                  r, changed)
        t0 = time.perf_counter()
        for job_id in changed:
            await events.publish(svc.redis, job_id, "running", r)
        waiting = [c for j in changed for c in by_job[j]]
        deadline = time.perf_counter() + 20
        while any(r not in c.seen for c in waiting) and time.perf_counter() < deadline:
            await asyncio.sleep(0.002)
        latencies += [(c.seen.get(r, deadline) - t0) * 1000 for c in waiting]
        await asyncio.sleep(GAP)
    return latencies


if __name__ == "__main__":
    asyncio.run(main())
