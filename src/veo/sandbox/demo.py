"""``veo demo``: the whole service offline, in one process.

Starts the fake Gemini API and the fake Flow site, the web app, a worker with a real browser,
creates a demo user, submits one API job and one Flow job, shows their progress and says where
the videos are. ``--once`` exits when both finished (CI); otherwise Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from veo import config, db, flow_state, logs
from veo.gemini import KeyCheck
from veo.keypool import KeyPool
from veo.sandbox.flow import FakeFlow
from veo.sandbox.gemini import FakeGemini
from veo.services import build_services, token_hash
from veo.web.app import create_app
from veo.web.auth import new_token

DEMO_DB = "postgresql://127.0.0.1:5432/veo_demo"


def run_demo(*, once: bool, port: int | None) -> int:
    try:
        root = Path(os.environ.get("STORAGE_DIR", "./data/demo")).resolve()
        return asyncio.run(_demo(once=once, port=port, root=root))
    except KeyboardInterrupt:
        print("\nstopped")
        return 0


async def _serve(app: Any, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task[Any]]:
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           access_log=False))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return server, task


async def _demo(*, once: bool, port: int | None, root: Path) -> int:
    env = dict(os.environ)
    dsn = env.get("DATABASE_URL", DEMO_DB)
    await db.ensure_database(dsn)
    gemini, flow = FakeGemini(), FakeFlow()
    gemini.delay, flow.delay = 3.0, 3.0
    await gemini.start()
    await flow.start()
    chromium = env.get("FLOW_BROWSER_EXECUTABLE") or shutil.which("chromium") or \
        shutil.which("chromium-browser") or shutil.which("google-chrome")
    env.update({
        "VEO_SANDBOX": "1", "DATABASE_URL": dsn, "STORAGE_DIR": str(root),
        "GEMINI_BASE_URL": gemini.url, "FLOW_BASE_URL": flow.home,
        "VEO_POLL_SECONDS": "0.5", "FLOW_STATE_POLL_SECONDS": "1", "LOG_FORMAT": "console",
        "VEO_RECONCILE_SECONDS": "2", "S3_BUCKET": "",
    })
    # the fake Flow accepts a headless browser; a headed one would open windows on a desktop
    env.setdefault("FLOW_HEADLESS", "true")
    if chromium:
        env["FLOW_BROWSER_EXECUTABLE"] = chromium
    settings = config.load(env)
    logs.configure("console")
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    svc = await build_services(settings)
    host = settings.host
    web, web_task = await _serve(create_app(settings, services=svc, sandbox_fakes=False), host,
                                 port if port is not None else settings.port)
    base = f"http://{host}:{web.servers[0].sockets[0].getsockname()[1]}"
    from veo.worker import settings as worker_settings

    worker = worker_settings.in_process(settings, flow=bool(chromium))
    await worker.__aenter__()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        token = new_token()
        user = await svc.db.create_user(f"demo-{int(time.time())}", True, token_hash(token))
        async def ok(_key: str) -> KeyCheck:
            return KeyCheck("ok")

        demo_key = f"AIza-demo-{secrets.token_hex(12)}"
        await KeyPool(svc.db, svc.box, settings).add(user.id, demo_key, "demo key", ok)
        await flow_state.write(svc.storage, svc.box, settings.flow_account,
                               flow.storage_state(), settings.flow_storage_state_key)
        async with httpx.AsyncClient(base_url=base, timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            jobs = {}
            for backend, prompt in (("api", "a paper boat drifting down a rainy street"),
                                    ("flow", "a lighthouse beam sweeping over a stormy sea")):
                if backend == "flow" and not chromium:
                    print("no Chromium found: skipping the Flow job (apt-get install chromium)")
                    continue
                resp = await client.post("/api/jobs", json={"prompt": prompt,
                                                            "backend": backend})
                resp.raise_for_status()
                jobs[backend] = resp.json()["id"]
                print(f"submitted {backend} job {jobs[backend]}: {prompt!r}")
            final = await _follow(client, jobs)
        print()
        for backend, body in final.items():
            for out in body["outputs"]:
                path = root / f"outputs/{body['id']}/{out['clip']}-{out['variant']}.mp4"
                print(f"{backend} video: {path} ({out['size']} bytes)\n    {out['url']}")
        print(f"\nweb page: {base}/   (sign in with the token below)")
        print(f"token:    {token}")
        print(f"API docs: {base}/api/openapi.json")
        succeeded = all(b["status"] == "succeeded" for b in final.values()) and bool(final)
        if once:
            return 0 if succeeded else 1
        print("\nrunning; press Ctrl-C to stop")
        await asyncio.Event().wait()
        return 0
    finally:
        await worker.__aexit__(None, None, None)
        web.should_exit = True
        with contextlib.suppress(BaseException):
            await web_task
        await svc.close()
        await flow.stop()
        await gemini.stop()


async def _follow(client: httpx.AsyncClient, jobs: dict[str, str]) -> dict[str, Any]:
    last: dict[str, str] = {}
    final: dict[str, Any] = {}
    deadline = time.monotonic() + 300
    while len(final) < len(jobs) and time.monotonic() < deadline:
        for backend, job_id in jobs.items():
            if backend in final:
                continue
            body = (await client.get(f"/api/jobs/{job_id}")).json()
            line = f"{body['status']} {body['progress']}%"
            if last.get(backend) != line:
                last[backend] = line
                print(f"  {backend:4} job: {line}", flush=True)
            if body["status"] in ("succeeded", "failed", "canceled"):
                final[backend] = body
                if body["error"]:
                    print(f"  {backend} job error: {body['error']['message']}", file=sys.stderr)
        await asyncio.sleep(0.5)
    return final
