"""The ``flow`` backend: clips made in the Flow web UI by the worker's one browser.

It also watches the login state in storage: a new state (admin API, ``veo-auth upload``, or a
file written straight into the bucket) is loaded, checked, and resumes the paused jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import Page

from veo import flow_state, keys, lifecycle, logs
from veo.browser.context import BrowserSession
from veo.browser.flow import ClipRequest, FlowDriver, FlowFailure, is_login_page, temp_dir, to_error
from veo.catalog import MODELS
from veo.config import Settings
from veo.errors import LoginRequired
from veo.services import Services
from veo.worker import alerts
from veo.worker.context import ClipRun

log = logs.get_logger("veo.worker.flow")

_CHUNK = 256 * 1024


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    fh = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(fh.read, _CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(fh.close)


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
        self._etag: str | None = None  # of the state the context was built from
        self._saved_fingerprint: str | None = None
        self.running = 0
        self.peak_running = 0

    async def start(self) -> None:
        loaded = await self._load_state(verify=False)
        # a new login may have arrived while no worker was running: check it now, since the
        # watcher only reacts to changes from here on
        if loaded and await lifecycle.flow_paused(self.svc, self.account) and \
                await self.verify():
            await self._resume("startup")

    async def close(self) -> None:
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

    async def blocked(self, job: dict[str, Any]) -> str | None:
        if await lifecycle.flow_paused(self.svc, self.account):
            return "flow_needs_auth"
        return None

    async def run_clip(self, run: ClipRun) -> None:
        if not self.browser.loaded and not await self._load_state(verify=False):
            raise LoginRequired(f"no Flow login state at {self.state_key}")
        p = run.params
        info = MODELS.get(run.job["model"])
        req = ClipRequest(prompt=run.clip["prompt"], aspect_ratio=p.get("aspect_ratio", "16:9"),
                          count=int(p.get("number_of_videos", 1)),
                          model_label=info.flow_label if info else None,
                          first_frame=await run.frame(run.clip["first_frame"]),
                          last_frame=await run.frame(run.clip["last_frame"]))
        fields = {"job_id": run.job_id, "clip": run.index, "backend": "flow",
                  "account": self.account}
        with temp_dir() as tmp:
            async with self.browser.page() as page:
                try:
                    files = await self.driver.generate(page, req, run.progress, Path(tmp))
                except FlowFailure as exc:
                    debug = await self._debug(page, run.job_id, f"clip{run.index}-{exc.step}")
                    log.warning("flow.failed", kind=exc.kind, step=exc.step, **fields)
                    raise to_error(exc, debug) from exc
                except LoginRequired:
                    await self._debug(page, run.job_id, f"clip{run.index}-login")
                    raise
            for variant, path in enumerate(files):
                out = await run.store_output(variant, _file_chunks(path))
                log.info("flow.downloaded", variant=variant, size=out["size"], **fields)
        await self._save_state()
        await self.browser.job_done()

    async def _debug(self, page: Page, job_id: str, step: str) -> dict[str, str]:
        """Screenshot and HTML of the page as it failed, under debug/{job_id}/."""
        saved: dict[str, str] = {}
        try:
            shot = await page.screenshot(full_page=True)
            key = keys.debug(job_id, step, "png")
            await self.svc.storage.put_bytes(key, shot, "image/png")
            saved["screenshot"] = key
        except Exception as exc:
            log.warning("flow.debug_failed", what="screenshot", error=type(exc).__name__)
        try:
            html = (await page.content()).encode()
            key = keys.debug(job_id, step, "html")
            await self.svc.storage.put_bytes(key, html, "text/html")
            saved["html"] = key
        except Exception as exc:
            log.warning("flow.debug_failed", what="html", error=type(exc).__name__)
        saved["url"] = page.url.split("?", 1)[0]
        return saved

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
        """Load Flow with the current state and report whether it is signed in."""
        async with self.browser.page() as page:
            await page.goto(self.settings.flow_base_url, wait_until="domcontentloaded")
            return not await is_login_page(page)

    async def check_state_once(self) -> bool:
        """Reload when the stored state changed; resume paused work once it is signed in."""
        head = await self.svc.storage.head(self.state_key)
        if head is None or head.etag == self._etag:
            return False
        ok = await self._load_state(verify=True)
        log.info("flow.auth_reloaded", account=self.account, logged_in=ok)
        if ok:
            await self._resume("state_changed")
        return ok

    async def _resume(self, why: str) -> None:
        await self.svc.db.flow_verified(self.account)
        await alerts.clear(self.svc, "flow_login_required", self.account)
        n = await lifecycle.resume_flow_account(self.svc, self.account)
        log.info("flow.resumed", account=self.account, jobs=n, why=why)

    async def watch_state(self) -> None:
        while True:
            try:
                await self.check_state_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("flow.state_watch_error", account=self.account)
            await asyncio.sleep(self.settings.flow_state_poll_seconds)
