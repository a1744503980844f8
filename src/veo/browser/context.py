"""One Browser and one BrowserContext per worker, reused across jobs.

The context is built from the decrypted storage state; refreshed cookies are handed back to be
saved encrypted. It is recycled after a number of jobs (Playwright keeps every request of a
context's life in memory) and the browser is relaunched if it dies.

Google refuses headless Chromium on Flow, so the browser runs headed by default, on the
machine's display or on an Xvfb of its own when none is set, and without the switches by which
automation announces itself (``--enable-automation``, the AutomationControlled feature).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from veo import logs
from veo.browser.display import VirtualDisplay

log = logs.get_logger("veo.browser")

# Chromium keeps only the last --disable-features/--enable-features it is given, so ours
# repeat Playwright's own (its chromiumSwitches.ts: requests to Google at start, Lens, media
# router, paint holding, storage partitioning, redirects under interception) before adding
# what keeps a long-lived worker's browser small. Unknown names are ignored, which lets the
# list outlive a Chromium release.
PLAYWRIGHT_DISABLED_FEATURES = [
    "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding",
    "ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect", "OptimizationHints",
    "NetworkTimeServiceQuerying", "AimEnabled", "PreconnectToSearch",
]
PLAYWRIGHT_ENABLED_FEATURES = ["CDPScreenshotNewSurface", "SkipListAccountsWithoutGaiaCookies"]
# Memory: a worker's browser lives for hundreds of clips with one page at a time, and every
# process Chromium starts costs tens of MB of its own. No renderer kept warm for the next site,
# no WebUI renderer preloaded for the address bar's popup or the toolbar (nobody types there),
# the network service and the GPU (software only here) in the browser process.
LEAN_DISABLED_FEATURES = [
    "SpareRendererForSitePerProcess", "PreloadTopChromeWebUI", "WebUIOmniboxPopup",
    "WebUIOmniboxAimPopup", "WebUIOmniboxFullPopup", "WebUIToolbar", "WebUIReloadButton",
]
LEAN_ENABLED_FEATURES = ["NetworkServiceInProcess2"]
CHROMIUM_ARGS = [
    # as the probe of this machine found: background networking makes Chromium call Google at
    # every start, which a closed network refuses many times over
    "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # navigator.webdriver stays false
    "--disable-blink-features=AutomationControlled", "--disable-dev-shm-usage",
    # several pages of one context run at once (FLOW_MAX_CONCURRENT): none may be treated
    # as a background tab, whose timers Chromium slows to once a second
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--disable-features=" + ",".join(PLAYWRIGHT_DISABLED_FEATURES + LEAN_DISABLED_FEATURES),
    "--enable-features=" + ",".join(PLAYWRIGHT_ENABLED_FEATURES + LEAN_ENABLED_FEATURES),
    # the pages of one worker are one site (Flow): one renderer serves them all
    "--in-process-gpu", "--renderer-process-limit=1",
    # a performance class given spares Chromium measuring one, which it does by starting its
    # on-device model service (50 MB, for good) a few minutes in; the lowest keeps on-device AI
    # features, which a worker never uses, from downloading models
    "--optimization-guide-performance-class=1",
    # Debian's build starts two crash-handler processes that keep dumps nobody here reads (a
    # crash is seen as the browser's disconnect, logged, and the browser relaunched)
    "--disable-crashpad-for-testing",
]
# Playwright's own switch that sets navigator.webdriver and shows the "controlled by automated
# test software" bar
AUTOMATION_DEFAULTS = ["--enable-automation"]
# Playwright's node driver relays small CDP messages for hours: a 1 MB young generation (V8
# sizes it up to 16 MB when it sees allocation) keeps it some 25 MB smaller at no visible cost
DRIVER_NODE_OPTIONS = "--max-semi-space-size=1"
WINDOW = {"width": 1280, "height": 900}


def chromium_args(headless: bool) -> list[str]:
    args = list(CHROMIUM_ARGS)
    if os.geteuid() == 0:
        args.insert(0, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    if not headless:
        args.append(f"--window-size={WINDOW['width']},{WINDOW['height']}")
    return args


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(*roots: int) -> set[int]:
    """The processes ``roots`` and their descendants (Linux /proc)."""
    children = _children()
    found: set[int] = set()
    stack = list(roots)
    while stack:
        p = stack.pop()
        if p in found:
            continue
        found.add(p)
        stack.extend(children.get(p, []))
    return found


def rss_of(pids: set[int]) -> int:
    """Resident memory of ``pids`` together, in bytes; a process that just ended counts 0."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
    return total


def process_tree_rss(pid: int) -> int:
    """Resident memory of a process and its descendants, in bytes (Linux /proc)."""
    return rss_of(process_tree(pid))


# a context whose process tree grew this much past its size when fresh is recycled early
RECYCLE_GROWTH = 1.5


# one driver start at a time: each changes NODE_OPTIONS around an await and puts it back
_DRIVER_STARTS = asyncio.Lock()


async def start_playwright() -> Playwright:
    """Playwright with its driver started under DRIVER_NODE_OPTIONS. The driver takes this
    process's environment when it is spawned, which happens before ``start`` returns."""
    async with _DRIVER_STARTS:
        before = os.environ.get("NODE_OPTIONS")
        os.environ["NODE_OPTIONS"] = f"{before} {DRIVER_NODE_OPTIONS}" if before else \
            DRIVER_NODE_OPTIONS
        try:
            return await async_playwright().start()
        finally:
            if before is None:
                os.environ.pop("NODE_OPTIONS", None)
            else:
                os.environ["NODE_OPTIONS"] = before


class BrowserSession:
    def __init__(self, *, executable: str | None, headless: bool, recycle_jobs: int,
                 display: VirtualDisplay | None = None) -> None:
        self.executable = executable
        self.headless = headless
        self.recycle_jobs = recycle_jobs
        # headed without a DISPLAY: an Xvfb of our own, started with the first browser; one
        # passed in is the caller's to stop
        self.display = display
        self._own_display = display is None
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._state: dict[str, Any] | None = None
        self._jobs_in_context = 0
        self._fresh_rss = 0  # bytes, measured after the first job of a context
        self._open_pages = 0
        self._lock = asyncio.Lock()
        self.launches = 0
        self.contexts = 0

    @property
    def loaded(self) -> bool:
        return self._state is not None

    async def _ensure_browser(self) -> Browser:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        if self._pw is None:
            self._pw = await start_playwright()
        env = await self._display_env()
        self._browser = await self._pw.chromium.launch(
            executable_path=self.executable, headless=self.headless,
            args=chromium_args(self.headless), ignore_default_args=AUTOMATION_DEFAULTS,
            env=env)  # type: ignore[arg-type]
        self._browser.on("disconnected", self._on_disconnected)
        self.launches += 1
        self._context = None
        log.info("browser.launched", launches=self.launches, headless=self.headless,
                 display=env.get("DISPLAY") if env else None)
        return self._browser

    async def _display_env(self) -> dict[str, str] | None:
        """The environment of a headed browser: the machine's display, or our own Xvfb."""
        if self.headless:
            return None
        if os.environ.get("DISPLAY") and self.display is None:
            return None
        if self.display is None:
            self.display = VirtualDisplay()
        return {**os.environ, "DISPLAY": await self.display.start()}

    def _on_disconnected(self, _browser: Browser) -> None:
        log.warning("browser.disconnected")
        self._browser = None
        self._context = None

    async def _ensure_context(self) -> BrowserContext:
        browser = await self._ensure_browser()
        if self._context is None:
            self._context = await browser.new_context(
                storage_state=self._state,  # type: ignore[arg-type]
                accept_downloads=True, viewport=WINDOW, locale="en-US")  # type: ignore[arg-type]
            self._context.set_default_timeout(15_000)
            self._jobs_in_context = 0
            self.contexts += 1
        return self._context

    async def load(self, state: dict[str, Any]) -> None:
        """Use a new login state: the current context is replaced."""
        async with self._lock:
            self._state = state
            await self._close_context()

    async def _close_context(self) -> None:
        if self._context is not None:
            with contextlib.suppress(Exception):
                await self._context.close()
            self._context = None

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        """A fresh page of the shared context, closed afterwards."""
        async with self._lock:
            context = await self._ensure_context()
            self._open_pages += 1
        page = await context.new_page()
        try:
            yield page
        finally:
            with contextlib.suppress(Exception):
                await page.close()
            async with self._lock:
                self._open_pages -= 1

    async def storage_state(self) -> dict[str, Any] | None:
        """The context's current cookies and local storage (refreshed by Google as it goes)."""
        if self._context is None:
            return None
        try:
            state: dict[str, Any] = dict(await self._context.storage_state())
        except Exception:
            return None
        self._state = state
        return state

    async def job_done(self) -> None:
        """Count a job; recycle the context when it has served enough of them or when memory
        grew well past what it was when the context was fresh."""
        rss = await asyncio.to_thread(process_tree_rss, os.getpid())
        async with self._lock:
            self._jobs_in_context += 1
            if self._jobs_in_context == 1:
                self._fresh_rss = rss
            grown = bool(self._fresh_rss) and rss > self._fresh_rss * RECYCLE_GROWTH
            if (self._jobs_in_context >= self.recycle_jobs or grown) and self._open_pages == 0:
                if self._context is not None:
                    with contextlib.suppress(Exception):
                        self._state = dict(await self._context.storage_state())
                await self._close_context()
                log.info("browser.context_recycled", contexts=self.contexts,
                         jobs=self._jobs_in_context, rss_mb=rss // 2**20)

    async def close(self) -> None:
        await self._close_context()
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.close()
            self._browser = None
        if self._pw is not None:
            with contextlib.suppress(Exception):
                await self._pw.stop()
            self._pw = None
        if self.display is not None and self._own_display:
            await self.display.stop()
