"""The arq worker: ``arq veo.worker.Settings``.

``Settings`` is built on first access (``veo.worker.__getattr__``), so importing the package
reads no environment and opens no connection; a bad environment exits naming the variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker

from veo import config, keys, logs
from veo.errors import ConfigError
from veo.gemini import Gemini
from veo.keypool import KeyPool
from veo.services import build_services
from veo.worker import reconciler, runner, webhooks
from veo.worker.api import ApiBackend
from veo.worker.context import Backend, Ctx

log = logs.get_logger("veo.worker")

POLL_DELAY = 0.01  # seconds between queue polls: arq's 0.5 s default makes dispatch slow
MAX_JOBS = 200  # jobs in flight per worker; API jobs mostly wait on remote operations
JOB_TIMEOUT = 24 * 3600  # arq's own limit; real per-job timeouts are enforced by the reconciler
SHUTDOWN_GRACE = 10  # seconds arq waits for running jobs on SIGTERM before re-queueing them


def _spawn(ctx: Ctx, coro: Any, name: str) -> None:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    ctx["tasks"].add(task)
    task.add_done_callback(ctx["tasks"].discard)


def make_startup(settings: config.Settings, *, flow: bool) -> Any:
    async def on_startup(ctx: Ctx) -> None:
        logs.configure(settings.log_format)
        svc = await build_services(settings, pool_size=20)
        ctx["services"] = svc
        ctx["worker_id"] = f"{socket.gethostname()}:{os.getpid()}"
        ctx["tasks"] = set()
        ctx["closers"] = []
        gemini = Gemini(settings)
        ctx["closers"].append(gemini.close)
        pool = KeyPool(svc.db, svc.box, settings)
        await pool.sync_operator_pool(settings.gemini_api_keys)
        backends: dict[str, Backend] = {"api": ApiBackend(pool, gemini, settings.poll_seconds)}
        if flow and settings.flow_enabled:
            from veo.worker.flow import FlowBackend

            fb = FlowBackend(svc, settings)
            await fb.start()
            ctx["closers"].append(fb.close)
            backends["flow"] = fb
            _spawn(ctx, fb.watch_state(), "flow-state-watcher")
            # this account's Flow jobs have a queue of their own, read by a second arq loop
            # in this process (sharing ctx): a worker never runs another account's Flow jobs
            run_job: Any = runner.run_job  # arq types its functions loosely
            shared: Any = ctx
            flow_worker = Worker(
                functions=[run_job], queue_name=keys.flow_queue(settings.flow_account),
                redis_settings=RedisSettings.from_dsn(settings.redis_url), ctx=shared,
                handle_signals=False, poll_delay=POLL_DELAY,
                max_jobs=max(4, 4 * settings.flow_max_concurrent), job_timeout=JOB_TIMEOUT,
                keep_result=0, max_tries=1_000, health_check_interval=30)
            _spawn(ctx, flow_worker.main(), "flow-queue")
            ctx["closers"].append(flow_worker.close)
        ctx["backends"] = backends
        _spawn(ctx, reconciler.run_forever(svc), "reconciler")
        log.info("worker.started", worker_id=ctx["worker_id"], backends=sorted(backends),
                 storage=svc.storage.backend, account=settings.flow_account)

    return on_startup


async def on_shutdown(ctx: Ctx) -> None:
    for task in list(ctx.get("tasks", ())):
        task.cancel()
    for task in list(ctx.get("tasks", ())):
        with contextlib.suppress(BaseException):  # cancelled on purpose just above
            await task
    for close in reversed(ctx.get("closers", [])):
        try:
            await close()
        except Exception:
            log.exception("worker.close_failed")
    if "services" in ctx:
        await ctx["services"].close()
    log.info("worker.stopped", worker_id=ctx.get("worker_id"))


def build(*, flow: bool = True, settings: config.Settings | None = None) -> type:
    if settings is None:
        try:
            settings = config.load()
        except ConfigError as exc:
            print(f"veo worker: {exc.message}", file=sys.stderr)
            raise SystemExit(2) from None
    attrs: dict[str, Any] = {
        "functions": [runner.run_job, webhooks.deliver_webhook],
        "on_startup": make_startup(settings, flow=flow),
        "on_shutdown": on_shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "poll_delay": POLL_DELAY,
        "max_jobs": MAX_JOBS,
        "job_timeout": JOB_TIMEOUT,
        "keep_result": 0,  # results live in PostgreSQL; 0 also lets an arq id be reused at once
        "max_tries": 1_000,  # runs are numbered by us (run_seq); webhooks count their own tries
        "job_completion_wait": SHUTDOWN_GRACE,
        "health_check_interval": 30,
    }
    return type("Settings", (), attrs)


@contextlib.asynccontextmanager
async def in_process(settings: config.Settings, *, flow: bool) -> AsyncIterator[Worker]:
    """A worker inside the current event loop (demo, tests, benchmarks); yields once its
    services are up, and closes it on exit."""
    cls = build(flow=flow, settings=settings)
    worker = Worker(**{k: v for k, v in vars(cls).items() if not k.startswith("__")},
                    handle_signals=False)
    task = asyncio.get_running_loop().create_task(worker.main())
    try:
        while not worker.ctx.get("backends"):
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        with contextlib.suppress(Exception):
            await worker.close()
