"""The ``flow`` backend: clips made in the Flow web UI by the worker's one browser, and the host
that decides whether this worker may drive the account at all.

``FlowHost`` competes for the account's lease in Redis; only its holder starts the browser, reads
the account's queue, watches the stored login and runs the canary, so two workers never drive
one Google account at once (others serve API jobs meanwhile). ``FlowBackend`` makes clips: it
builds the request from the job, lets the driver work the page, classifies what went wrong
(a sign-in page pauses the account's work; a rate limit or "unusual activity" rests the account;
every failure leaves a screenshot and the page's HTML under ``debug/{job_id}/``), and stores the
videos with the posters the page showed beside them. A new login is swapped in only between
generations.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from playwright.async_api import Page

from veo import flow_state, logs, media, names
from veo.alerts import CANARY, clear, raise_alert
from veo.browser.context import BrowserSession
from veo.browser.flow import (
    COOL_DOWN,
    RETRYABLE,
    CanaryReport,
    ClipRequest,
    FlowDriver,
    FlowFailure,
    LoginState,
)
from veo.config import Settings
from veo.errors import AccountCooling, GenerationFailed, LoginRequired
from veo.records import Job
from veo.services import Services
from veo.worker.context import ClipRun, Ctx, Frame
from veo.worker.lease import Lease

log = logs.get_logger("veo.worker.flow")

CANARY_PROMPT = "a calm lake at dawn"  # typed into the composer, never submitted


class _Gate:
    """Generations share the browser; swapping in a new login needs it to itself."""

    def __init__(self) -> None:
        self._users = 0
        self._idle = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._idle:
            self._users += 1
        try:
            yield
        finally:
            async with self._idle:
                self._users -= 1
                self._idle.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._idle:
            await self._idle.wait_for(lambda: self._users == 0)
            yield


def _frame(frame: Frame | None) -> tuple[bytes, str] | None:
    return None if frame is None else (frame.data, frame.content_type)


class FlowBackend:
    name = "flow"
    clip_concurrency = 1  # one composer per page; clips of a job go one after another

    def __init__(self, svc: Services, settings: Settings) -> None:
        self.svc = svc
        self.settings = settings
        self.account = settings.flow_account
        self.state_key = settings.flow_storage_state_key
        self.browser = BrowserSession(executable=settings.flow_browser_executable,
                                      headless=settings.flow_headless,
                                      recycle_jobs=settings.flow_recycle_jobs)
        self.driver = FlowDriver(settings.flow_base_url, settings.flow_job_timeout)
        self._slots = asyncio.Semaphore(settings.flow_max_concurrent)
        self._gate = _Gate()
        self._etag: str | None = None  # of the state the context was built from
        self._saved_fingerprint: str | None = None
        self.running = 0
        self.peak_running = 0

    async def start(self) -> None:
        loaded = await self._load_state(verify=False)
        # a new login may have arrived while no worker drove the account: check it now, since
        # the watcher only reacts to changes from here on
        if loaded and await self.svc.lifecycle.flow_paused(self.account) and \
                await self.verify():
            await self.svc.lifecycle.resume_flow(self.account, "flow_needs_auth", why="startup")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._save_state()
        await self.browser.close()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._slots:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            try:
                yield
            finally:
                self.running -= 1

    async def blocked(self, job: Job) -> str | None:
        if await self.svc.lifecycle.flow_paused(self.account):
            return "flow_needs_auth"
        acct = await self.svc.db.flow_account(self.account)
        if acct is not None and acct.cooling_until is not None and \
                acct.cooling_until > datetime.now(UTC):
            return "flow_rate_limited"
        return None

    def _request(self, run: ClipRun, first: Frame | None, last: Frame | None) -> ClipRequest:
        model = self.svc.catalog.get(run.job.model)
        p = run.params
        return ClipRequest(prompt=run.clip.prompt, aspect_ratio=p.aspect_ratio,
                           resolution=p.resolution, duration_seconds=p.duration_seconds,
                           count=p.number_of_videos,
                           model_label=model.flow_label if model else None,
                           first_frame=_frame(first), last_frame=_frame(last))

    async def run_clip(self, run: ClipRun) -> None:
        req = self._request(run, await run.first_frame(), await run.last_frame())
        run.started()
        async with self._gate.shared():
            if not self.browser.loaded and not await self._load_state(verify=False):
                raise LoginRequired(f"no Flow login state at {self.state_key}")
            async with media.workdir() as tmp:
                async with self.browser.page() as page:
                    try:
                        videos = await self.driver.generate(page, req, run.progress, tmp)
                    except FlowFailure as exc:
                        debug = await self._debug(page, run.job_id,
                                                  f"clip{run.index}-{exc.step}")
                        log.warning("flow.failed", kind=exc.kind, step=exc.step, **run.fields)
                        raise _error(exc, debug) from exc
                    except LoginRequired:
                        await self._debug(page, run.job_id, f"clip{run.index}-login")
                        raise
                for variant, video in enumerate(videos):
                    poster = (await asyncio.to_thread(video.poster.read_bytes)
                              if video.poster else None)
                    staged = await run.store_output(variant, media.file_chunks(video.path),
                                                    poster=poster)
                    log.info("flow.downloaded", variant=variant, size=staged.size,
                             workflow=video.workflow_id, **run.fields)
        await self.svc.db.account_ok(self.account)
        await self._save_state()
        await self.browser.job_done()

    async def _debug(self, page: Page, job_id: str, step: str) -> dict[str, str]:
        """Screenshot and HTML of the page as it failed, under debug/{job_id}/."""
        saved: dict[str, str] = {}
        storage = self.svc.storage
        try:
            shot = await page.screenshot(full_page=True)
            key = names.debug(job_id, step, "png")
            await storage.put_bytes(key, shot, "image/png")
            saved["screenshot"] = key
        except Exception as exc:
            log.warning("flow.debug_failed", what="screenshot", error=type(exc).__name__)
        try:
            key = names.debug(job_id, step, "html")
            await storage.put_bytes(key, (await page.content()).encode(), "text/html")
            saved["html"] = key
        except Exception as exc:
            log.warning("flow.debug_failed", what="html", error=type(exc).__name__)
        saved["url"] = page.url.split("?", 1)[0]
        return saved

    # ---- the login state

    async def _save_state(self) -> None:
        """Write refreshed cookies back (encrypted) when they changed."""
        state = await self.browser.storage_state()
        if not state:
            return
        fp = hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
        if fp == self._saved_fingerprint:
            return
        if self._saved_fingerprint is None:
            self._saved_fingerprint = fp  # the state as loaded: nothing new to save
            return
        head = await self.svc.storage.head(self.state_key)
        if head is not None and head.etag != self._etag:
            return  # someone stored a new login meanwhile: never overwrite it with ours
        self._etag = await flow_state.write(self.svc.storage, self.svc.box, self.account, state,
                                            self.state_key)
        self._saved_fingerprint = fp

    async def _load_state(self, *, verify: bool) -> bool:
        loaded = await flow_state.read(self.svc.storage, self.svc.box, self.account,
                                       self.state_key)
        if loaded is None:
            return False
        await self.browser.load(loaded.state)
        self._etag = loaded.etag
        self._saved_fingerprint = None
        ok = await self.verify() if verify else True
        await self.svc.db.flow_state_loaded(self.account, loaded.etag, verify and ok)
        return ok

    async def verify(self) -> bool:
        """Open Flow with the current state: the same login test as ``veo-auth check``."""
        async with self.browser.page() as page:
            state = await self.driver.check_login(page)
        return state is LoginState.SIGNED_IN

    async def check_state_once(self) -> bool:
        """Reload when the stored state changed (between generations, never under one);
        resume paused work once it is signed in."""
        head = await self.svc.storage.head(self.state_key)
        if head is None or head.etag == self._etag:
            return False
        async with self._gate.exclusive():
            ok = await self._load_state(verify=True)
        log.info("flow.auth_reloaded", account=self.account, logged_in=ok)
        if ok:
            await self.svc.lifecycle.resume_flow(self.account, "flow_needs_auth",
                                                 why="flow_auth_reloaded")
        return ok

    async def watch_state(self) -> None:
        while True:
            try:
                await self.check_state_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("flow.state_watch_error", account=self.account,
                            error=type(exc).__name__, detail=str(exc)[:200])
            await asyncio.sleep(self.settings.flow_state_poll_seconds)

    # ---- the canary

    async def canary(self) -> CanaryReport:
        """Walk the UI up to (never including) the submit and record what matched."""
        req = ClipRequest(prompt=CANARY_PROMPT, model_label=self._default_label())
        async with self.slot(), self._gate.shared():
            if not self.browser.loaded:
                await self._load_state(verify=False)
            async with self.browser.page() as page:
                report = await self.driver.canary(page, req)
                debug = {} if report.ok else await self._debug(
                    page, f"canary_{self.account}", f"{int(time.time())}-{report.step}")
        at = datetime.now(UTC)
        await self.svc.db.set_canary(self.account, {
            "ok": report.ok, "at": at.isoformat(), "step": report.step,
            "fallback_used": report.fallback_used, "message": report.message,
            "debug": debug})
        if report.ok:
            log.info("flow.canary_ok", account=self.account,
                     fallback_used=report.fallback_used)
            await clear(self.svc.db, CANARY, self.account)
        else:
            log.warning("flow.canary_failed", account=self.account, step=report.step,
                        detail=report.message, debug=debug)
            await raise_alert(self.svc.db, CANARY, self.account, {
                "account": self.account, "step": report.step, "debug": debug,
                "message": f"the Flow canary for {self.account!r} failed at step "
                           f"{report.step}: {report.message}"})
        return report

    def _default_label(self) -> str | None:
        model = self.svc.catalog.get(self.settings.default_model)
        return model.flow_label if model else None


def _error(exc: FlowFailure, debug: dict[str, str]) -> Exception:
    details = {"step": exc.step, "debug": debug}
    if exc.kind in COOL_DOWN:
        return AccountCooling(f"Flow {exc.kind.replace('_', ' ')}: {exc.message}",
                              kind=exc.kind, details=details)
    return GenerationFailed(f"Flow {exc.kind.replace('_', ' ')}: {exc.message}", code=exc.kind,
                            retryable=RETRYABLE.get(exc.kind, True), details=details)


QueueWorkerFactory = Callable[[Settings, Ctx, str, int], Any]


class FlowHost:
    """Drives one Flow account while this worker holds its lease."""

    def __init__(self, svc: Services, ctx: Ctx, make_queue_worker: QueueWorkerFactory) -> None:
        self.svc = svc
        self.ctx = ctx
        self.settings = svc.settings
        self.account = svc.settings.flow_account
        self.lease = Lease(svc.redis, names.flow_lease(self.account), ctx["worker_id"],
                           svc.settings.flow_lease_seconds)
        self.make_queue_worker = make_queue_worker
        self.backend: FlowBackend | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._queue_worker: Any = None

    async def run(self) -> None:
        tick = self.settings.flow_lease_seconds / 3
        waiting_logged = False
        while True:
            try:
                if self.backend is None:
                    if await self.lease.acquire():
                        await self._drive()
                        waiting_logged = False
                    elif not waiting_logged:
                        log.info("flow.lease_waiting", account=self.account,
                                 holder=await self.lease.holder())
                        waiting_logged = True
                elif not await self.lease.renew():
                    log.warning("flow.lease_lost", account=self.account,
                                holder=await self.lease.holder())
                    await self._stop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarting: the lease is re-taken when it is back
                log.warning("flow.lease_error", account=self.account, error=type(exc).__name__)
            await asyncio.sleep(tick)

    async def _drive(self) -> None:
        backend = FlowBackend(self.svc, self.settings)
        await backend.start()
        self.backend = backend
        self.ctx["backends"]["flow"] = backend
        qw = self.make_queue_worker(self.settings, self.ctx, names.flow_queue(self.account),
                                    max(4, 4 * self.settings.flow_max_concurrent))
        self._queue_worker = qw
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(qw.main(), name="flow-queue"),
                       loop.create_task(backend.watch_state(), name="flow-state-watcher"),
                       loop.create_task(self._canaries(backend), name="flow-canary")]
        log.info("flow.lease_acquired", account=self.account, worker_id=self.ctx["worker_id"])

    async def _canaries(self, backend: FlowBackend) -> None:
        every = self.settings.flow_canary_minutes * 60
        request_key = names.flow_canary_request(self.account)
        next_at = time.monotonic() + every if every else None
        while True:
            asked = await self.svc.redis.getdel(request_key)
            if asked or (next_at is not None and time.monotonic() >= next_at):
                try:
                    await backend.canary()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("flow.canary_error", account=self.account,
                                error=type(exc).__name__, detail=str(exc)[:200])
                if next_at is not None:
                    next_at = time.monotonic() + every
            await asyncio.sleep(min(2.0, every) if every else 2.0)

    async def _stop(self) -> None:
        """Stop driving: the runs in progress go back to the queue, the browser closes."""
        qw, self._queue_worker = self._queue_worker, None
        if qw is not None:
            qw.allow_pick_jobs = False
            for task in list(qw.tasks.values()):
                task.cancel()  # each run hands its job back (reason: shutdown)
            await asyncio.gather(*qw.tasks.values(), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if qw is not None:
            with contextlib.suppress(Exception):
                await qw.close()
        backend, self.backend = self.backend, None
        self.ctx["backends"].pop("flow", None)
        if backend is not None:
            await backend.close()

    async def close(self) -> None:
        await self._stop()
        with contextlib.suppress(Exception):
            await self.lease.release()
