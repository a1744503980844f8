"""A whole service in one test: real PostgreSQL, Redis, storage, the web app over real HTTP,
an arq worker in-process, and the sandbox fakes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from arq.worker import Worker

from tests.conftest import SECRET
from veo import config
from veo.services import Services, build_services, token_hash
from veo.web.app import create_app
from veo.web.auth import new_token
from veo.worker import settings as worker_settings

FAST = {
    "VEO_POLL_SECONDS": "0.05",
    "VEO_HEARTBEAT_SECONDS": "0.2",
    "VEO_STALE_AFTER_SECONDS": "2",
    "VEO_RECONCILE_SECONDS": "0.3",
    "VEO_WEBHOOK_ALLOW_PRIVATE": "1",
    "VEO_KEY_COOLDOWN_SECONDS": "1",
    "VEO_KEY_COOLDOWN_MAX_SECONDS": "4",
    "FLOW_STATE_POLL_SECONDS": "0.3",
    "LOG_FORMAT": "json",
}


def make_env(pg_dsn: str, redis_url: str, storage_dir: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": pg_dsn, "REDIS_URL": redis_url, "STORAGE_DIR": storage_dir,
            "VEO_SECRET_KEY": SECRET, "FLOW_BACKEND_ENABLED": "false", **FAST, **extra}


@dataclasses.dataclass
class Harness:
    settings: config.Settings
    svc: Services
    base_url: str
    http: httpx.AsyncClient
    worker: Worker | None = None
    _worker_cm: Any = None

    async def user(self, name: str = "user", admin: bool = False) -> tuple[dict[str, Any], str]:
        token = new_token()
        row = await self.svc.db.create_user(name, admin, token_hash(token))
        return row, token

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def start_worker(self, *, flow: bool = False) -> None:
        self._worker_cm = worker_settings.in_process(self.settings, flow=flow)
        self.worker = await self._worker_cm.__aenter__()

    async def stop_worker(self) -> None:
        if self.worker is None:
            return
        await self._worker_cm.__aexit__(None, None, None)
        self.worker = None

    async def wait_job(self, token: str, job_id: str, statuses: set[str],
                       timeout: float = 30.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        body: dict[str, Any] = {}
        while asyncio.get_running_loop().time() < deadline:
            resp = await self.http.get(f"/api/jobs/{job_id}", headers=self.auth(token))
            body = resp.json()
            if body.get("status") in statuses:
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} did not reach {statuses}: {body}")


@contextlib.asynccontextmanager
async def running(env: dict[str, str]) -> AsyncIterator[Harness]:
    settings = config.load(env)
    svc = await build_services(settings)
    app = create_app(settings, services=svc)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           access_log=False))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    http = httpx.AsyncClient(base_url=base, timeout=30)
    h = Harness(settings=settings, svc=svc, base_url=base, http=http)
    try:
        yield h
    finally:
        await h.stop_worker()
        await http.aclose()
        server.should_exit = True
        await task
        # leave nothing for the next test's reconciler
        await svc.db.pool.execute(
            "UPDATE jobs SET status = 'canceled', paused_reason = NULL "
            "WHERE status IN ('queued', 'running', 'paused')")
        await svc.db.pool.execute("UPDATE api_keys SET status = 'invalid', cooling_until = NULL")
        await svc.close()
