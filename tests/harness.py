"""A whole service in one test: real PostgreSQL, Redis, storage, the web app over real HTTP,
an arq worker in-process, and the sandbox fakes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from arq.worker import Worker
from PIL import Image

from veo import config
from veo.records import User
from veo.services import Services, build_services, token_hash
from veo.web.app import create_app
from veo.web.auth import new_token
from veo.worker import settings as worker_settings

PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://127.0.0.1:5432/postgres")
SECRET = "test-secret-key-that-is-long-enough-0123456789"
CHROMIUM = os.environ.get("FLOW_BROWSER_EXECUTABLE") or shutil.which("chromium") or \
    "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own on a free port: no other test run shares it, and a test
    can stop and start it (a real restart, not FLUSHDB). Keeps nothing on disk, like the
    machine's Redis."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
            self.proc = None


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

    async def user(self, name: str = "user", admin: bool = False) -> tuple[User, str]:
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


# ---- helpers the tests share ----------------------------------------------------------------

def new_key(tag: str = "k") -> str:
    # built at run time so nothing in the repository looks like a leaked key
    return "AI" + f"za{tag}-{uuid.uuid4().hex}"


def png(color: tuple[int, int, int], size: tuple[int, int] = (32, 18)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


async def add_key(h: Harness, token: str, key: str) -> dict[str, Any]:
    resp = await h.http.post("/api/keys", json={"key": key, "label": "mine"},
                             headers=h.auth(token))
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def upload(h: Harness, token: str, data: bytes) -> dict[str, Any]:
    resp = await h.http.post("/api/uploads", files={"file": ("f.png", data, "image/png")},
                             headers=h.auth(token))
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def fetch_output(h: Harness, token: str, url: str) -> bytes:
    resp = await h.http.get(url, headers=h.auth(token))
    assert resp.status_code == 200, resp.text
    return resp.content


async def submit(h: Harness, token: str, body: dict[str, Any], backend: str | None = None) -> str:
    resp = await h.http.post("/api/jobs", json=body, headers=h.auth(token))
    assert resp.status_code == 201, resp.text
    job: dict[str, Any] = resp.json()
    if backend is not None:
        assert job["backend"] == backend
    return str(job["id"])


def worker_env(h: Harness, **extra: str) -> dict[str, str]:
    """The environment of a worker process sharing the harness's database, Redis, storage."""
    s = h.settings
    return {"DATABASE_URL": s.database_url, "REDIS_URL": s.redis_url,
            "STORAGE_DIR": s.storage_dir, "VEO_SECRET_KEY": s.secret_key,
            "VEO_HEARTBEAT_SECONDS": "0.2", "VEO_STALE_AFTER_SECONDS": "1.5",
            "VEO_RECONCILE_SECONDS": "0.3", **extra}


async def eventually(condition: Callable[[], object], seconds: float = 30) -> None:
    """Wait until ``condition()`` is truthy (polled every 50 ms)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)


async def spawn_worker(env: dict[str, str], log: Path,
                       settings_class: str = "veo.worker.Settings") -> asyncio.subprocess.Process:
    arq = str(Path(sys.executable).parent / "arq")
    fh = log.open("ab")
    return await asyncio.create_subprocess_exec(
        arq, settings_class, env={**os.environ, **env}, stdout=fh, stderr=fh)


async def colour_at(path: str | Path, t: float) -> tuple[int, int, int]:
    """The mean colour of the frame at ``t`` seconds (the fakes' videos are solid colours)."""
    from veo.sandbox import mp4

    proc = await asyncio.create_subprocess_exec(
        mp4.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-ss", f"{t:.3f}", "-i",
        str(path), "-frames:v", "1", "-vf", "scale=1:1:flags=area", "-f", "rawvideo",
        "-pix_fmt", "rgb24", "-", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0 and len(out) == 3, err.decode()
    return out[0], out[1], out[2]


def near(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ---- helpers of the run, fault, delivery and stream tests ------------------------------------

def new_aq_key() -> str:
    """A key of the newer ``AQ.`` shape, built at run time like ``new_key``."""
    return "AQ" + "." + "Ab" + uuid.uuid4().hex + uuid.uuid4().hex[:10]


def api_env(pg_dsn: str, redis_url: str, storage_dir: str | Path, gemini_url: str,
            **extra: str) -> dict[str, str]:
    """``make_env`` for the API backend against the fake Gemini API, with extra settings."""
    return make_env(pg_dsn, redis_url, str(storage_dir), GEMINI_BASE_URL=gemini_url, **extra)


async def until(condition: Callable[[], Any], seconds: float = 30, what: str = "") -> None:
    """Wait until ``await condition()`` (or ``condition()``) is truthy; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what or condition}")


async def job_row(h: Harness, job_id: str) -> dict[str, Any]:
    row = await h.svc.db.pool.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    assert row is not None
    return dict(row)


async def clip_rows(h: Harness, job_id: str) -> list[dict[str, Any]]:
    rows = await h.svc.db.pool.fetch("SELECT * FROM clips WHERE job_id = $1 ORDER BY idx",
                                     job_id)
    return [dict(r) for r in rows]


async def status_of(h: Harness, job_id: str) -> str:
    return str((await job_row(h, job_id))["status"])


async def get_job(h: Harness, token: str, job_id: str) -> dict[str, Any]:
    resp = await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def polls_of(fake: Any, interaction: str) -> list[dict[str, Any]]:
    """The fake Gemini API's recorded GETs of one interaction."""
    return [r for r in fake.requests if r["kind"] == "get" and r.get("interaction") == interaction]


async def stop_process(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM,
                       timeout: float = 30) -> None:
    """Signal a process this test started and wait for it; SIGKILL if it lingers."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def terminate_backends(admin_dsn: str, database: str) -> int:
    """``pg_terminate_backend`` every connection to ``database`` but this one's: what a
    PostgreSQL failover or an operator's kill looks like to the service."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()", database)
        return sum(1 for r in rows if r["done"])
    finally:
        await conn.close()


async def make_user(h: Harness, name: str, admin: bool = False) -> tuple[Any, str]:
    """A user row (typed) and its bearer token."""
    token = new_token()
    return await h.svc.db.create_user(name, admin, token_hash(token)), token


class Receiver:
    """A webhook (or alert) receiver on loopback that records every request and answers with
    the statuses queued in ``answers`` (200 once they run out)."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.routing import Route

        from veo.sandbox.serving import LoopbackServer

        self.received: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.location: str | None = None  # sent with 3xx answers
        self.server = LoopbackServer()
        self.server.app = Starlette(routes=[Route("/{path:path}", self._hit,
                                                  methods=["GET", "POST"])])

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> str:
        return await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def _hit(self, request: Any) -> Any:
        from starlette.responses import Response

        self.received.append({"path": request.url.path, "headers": dict(request.headers),
                              "body": await request.body(), "at": time.monotonic()})
        status = self.answers.pop(0) if self.answers else 200
        headers = {"location": self.location} if 300 <= status < 400 and self.location else None
        return Response(status_code=status, headers=headers)

    def hits(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"] == path]
