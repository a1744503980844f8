"""Submit throughput: ``POST /api/jobs`` against a trivial JSON endpoint on the same server.

The server runs in its own process (uvicorn, one worker); the load comes from this one with
a fixed concurrency for a fixed time per endpoint. Prints requests/s for each and the ratio.
Target: submit >= 50% of the trivial endpoint's throughput.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._env import environment

CONCURRENCY = 16
SECONDS = 2.0  # per round and endpoint
ROUNDS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def hammer(client: httpx.AsyncClient, path: str, body: dict, headers: dict) -> float:  # type: ignore[type-arg]
    done = 0
    deadline = time.perf_counter() + SECONDS

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            resp = await client.post(path, json=body, headers=headers)
            assert resp.status_code in (200, 201), resp.text
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - start)


async def main() -> None:
    key = f"AIza-bench-{uuid.uuid4().hex}"
    async with environment(GEMINI_API_KEYS=key, GEMINI_BASE_URL="http://127.0.0.1:9") as env:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "uvicorn"), "--factory", "bench._submit_app:build",
            "--port", str(port), "--log-level", "warning", "--no-access-log",
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            from veo import config
            from veo.services import build_services, token_hash

            svc = await build_services(config.load(env))
            await svc.db.create_user("bench", False, token_hash("veo_benchtoken_0123456789abcdef"))
            await svc.close()
            limits = httpx.Limits(max_connections=CONCURRENCY)
            async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
                for _ in range(100):
                    try:
                        await client.get("/api/health")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                headers = {"Authorization": "Bearer veo_benchtoken_0123456789abcdef"}
                await hammer(client, "/bench/ping", {}, {})  # warm up both paths
                await hammer(client, "/api/jobs", {"prompt": "warm"}, headers)
                # alternate rounds so drift on a shared 2-core machine hits both sides alike
                pairs = []
                for _ in range(ROUNDS):
                    t = await hammer(client, "/bench/ping", {"prompt": "x"}, {})
                    s = await hammer(client, "/api/jobs", {"prompt": "a bench clip"}, headers)
                    pairs.append((s, t))
        finally:
            proc.terminate()
            await proc.wait()
    pairs.sort(key=lambda p: p[0] / p[1])
    submit, trivial = pairs[len(pairs) // 2]
    ratio = submit / trivial
    print(f"submit: POST /api/jobs {submit:.0f} req/s, trivial JSON {trivial:.0f} req/s, "
          f"ratio {ratio:.0%} (target >= 50%) {'OK' if ratio >= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
