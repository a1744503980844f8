"""The arq worker processes: ``arq veo.worker.Settings`` (API and Flow jobs) and
``arq veo.worker.ApiSettings`` (API jobs only, no browser: add these to scale API throughput).

Both classes are built on first access (``veo.worker.__getattr__``), so importing the package
reads no environment and opens no connection; a bad environment exits naming the variable.
Beside arq's loop each process runs the reconciler and the outbox sender; a process that may
drive Flow also competes for its account's lease and, while it holds it, runs the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import arq.worker
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from redis.exceptions import RedisError

from veo import config, logs, metrics
from veo.errors import ConfigError
from veo.gemini import Gemini
from veo.keypool import KeyPool
from veo.services import build_services
from veo.worker import outbox, reconciler, runner
from veo.worker.api import ApiBackend
from veo.worker.context import Backend, Ctx

log = logs.get_logger("veo.worker")

POLL_DELAY = 0.01  # seconds between queue polls: arq's 0.5 s default makes dispatch slow
MAX_JOBS = 200  # jobs in flight per worker; API jobs mostly wait on remote generations
JOB_TIMEOUT = 24 * 3600  # arq's own limit; real timeouts are per clip, by the reconciler
SHUTDOWN_GRACE = 10  # seconds arq waits for running jobs on SIGTERM before handing them back
REDIS_RETRY_MAX = 5.0  # seconds between polls at most while Redis is unreachable


class Worker(arq.worker.Worker):
    """arq's worker, made to ride out a Redis restart: arq's poll loop dies on the first
    connection error; this one waits (growing back-off), reconnects and goes on."""

    _outage: float = 0.0

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            if not self._outage:
                log.warning("worker.redis_unavailable", error=type(exc).__name__)
            # a start interrupted half-way leaves arq's slot count off: recount from the tasks
            running = sum(1 for t in self.tasks.values() if not t.done())
            self.job_counter = running
            self.sem = asyncio.BoundedSemaphore(self.max_jobs + 1)
            for _ in range(running):
                await self.sem.acquire()  # the running tasks release theirs when they end
            self._outage = min(max(self._outage * 2, 0.1), REDIS_RETRY_MAX)
            await asyncio.sleep(self._outage)
            return
        if self._outage:
            log.info("worker.redis_back")
            self._outage = 0.0

    async def close(self) -> None:
        """arq's own, but gathering the cancelled runs with ``return_exceptions``: arq lets the
        first cancelled run's CancelledError out of ``close``, which then skips ``on_shutdown``
        (services and the browser left open) and raises into whoever stops the worker."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.close(close_connection_pool=True)
        self._pool = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq reads every due id of the queue at each poll, running ones included (an id
        leaves the queue when its job ends), and checks each with a three-command Redis
        transaction: with 100 jobs in flight and a 10 ms poll that kept the event loop busy
        with tens of thousands of commands a second. Ids this worker runs are skipped, and the
        rest are checked in one pipelined round trip first; arq's transaction still decides."""
        ids = [j for j in job_ids if (t := self.tasks.get(j.decode())) is None or t.done()]
        if len(ids) > 1:
            async with self.pool.pipeline(transaction=False) as pipe:
                for j in ids:
                    pipe.exists(in_progress_key_prefix + j.decode())
                busy = await pipe.execute()
            ids = [j for j, b in zip(ids, busy, strict=True) if not b]
        await super().start_jobs(ids)


def spawn(ctx: Ctx, coro: Coroutine[Any, Any, Any], name: str) -> None:
    """Start a task the worker owns: cancelled and awaited at shutdown."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    ctx["tasks"].add(task)
    task.add_done_callback(ctx["tasks"].discard)


def make_startup(settings: config.Settings, *, flow: bool) -> Any:
    async def on_startup(ctx: Ctx) -> None:
        logs.configure(settings.log_format)
        svc = await build_services(settings, pool_size=20)
        ctx["services"] = svc
        # unique per worker, also for several in one process (demo, tests, the Flow loop)
        ctx["worker_id"] = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        ctx["tasks"] = set()
        ctx["closers"] = []
        ctx["starting"] = asyncio.Semaphore(runner.STARTING_AT_ONCE)
        gemini = Gemini(settings)
        ctx["closers"].append(gemini.close)
        pool = KeyPool(svc.db, svc.box, settings)
        await pool.sync_operator_pool(settings.gemini_api_keys)
        await gemini.warm(settings.gemini_api_keys)
        backends: dict[str, Backend] = {"api": ApiBackend(pool, gemini, settings, svc.catalog)}
        ctx["backends"] = backends
        if flow and settings.flow_enabled:
            from veo.worker.flow import FlowHost

            host = FlowHost(svc, ctx, make_queue_worker)
            ctx["closers"].append(host.close)
            spawn(ctx, host.run(), "flow-host")
        spawn(ctx, reconciler.run_forever(svc), "reconciler")
        spawn(ctx, outbox.run_forever(svc), "outbox")
        if settings.worker_metrics_port:
            metrics.serve(settings.worker_metrics_port)
        log.info("worker.started", worker_id=ctx["worker_id"], flow=flow and settings.flow_enabled,
                 storage=svc.storage.backend, account=settings.flow_account)

    return on_startup


def make_queue_worker(settings: config.Settings, ctx: Ctx, queue_name: str,
                      max_jobs: int) -> Worker:
    """A second arq loop in this process (sharing ``ctx``) reading one Flow account's queue."""
    run_job: Any = runner.run_job  # arq types its functions loosely
    shared: Any = ctx
    return Worker(functions=[run_job], queue_name=queue_name,
                  redis_settings=RedisSettings.from_dsn(settings.redis_url), ctx=shared,
                  handle_signals=False, poll_delay=POLL_DELAY, max_jobs=max_jobs,
                  job_timeout=JOB_TIMEOUT, keep_result=0, max_tries=1_000,
                  health_check_interval=30)


async def on_shutdown(ctx: Ctx) -> None:
    for close in reversed(ctx.get("closers", [])):
        try:
            await close()
        except Exception:
            log.exception("worker.close_failed")
    for task in list(ctx.get("tasks", ())):
        task.cancel()
    for task in list(ctx.get("tasks", ())):
        with contextlib.suppress(BaseException):  # cancelled on purpose just above
            await task
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
        "functions": [runner.run_job],
        "on_startup": make_startup(settings, flow=flow),
        "on_shutdown": on_shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "poll_delay": POLL_DELAY,
        "max_jobs": MAX_JOBS,
        "job_timeout": JOB_TIMEOUT,
        "keep_result": 0,  # results live in PostgreSQL; 0 also lets an arq id be reused at once
        "max_tries": 1_000,  # runs are numbered by us (run_seq), not by arq's tries
        "job_completion_wait": SHUTDOWN_GRACE,
        "health_check_interval": 30,
    }
    # `arq veo.worker.Settings` builds `arq.worker.Worker` by name; point that name at the
    # subclass that survives Redis restarts (arq has no setting for the class)
    arq.worker.Worker = Worker  # type: ignore[misc]
    return type("Settings" if flow else "ApiSettings", (), attrs)


@contextlib.asynccontextmanager
async def in_process(settings: config.Settings, *, flow: bool) -> AsyncIterator[Worker]:
    """A worker inside the current event loop (demo, tests, benchmarks); yields once its
    services are up, and closes it on exit."""
    cls = build(flow=flow, settings=settings)
    kwargs = {k: v for k, v in vars(cls).items() if not k.startswith("__")}
    worker = Worker(**kwargs, handle_signals=False)
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
