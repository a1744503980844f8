"""The worker's browser: reused across jobs, recycled, and relaunched when it dies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness import CHROMIUM
from veo.browser import context as ctxmod
from veo.browser.context import BrowserSession, process_tree
from veo.browser.display import VirtualDisplay
from veo.sandbox.flow import FakeFlow


async def test_reuse_recycle_and_relaunch(fake_flow: FakeFlow,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # memory-driven recycling is tested below; here only the job count may recycle
    monkeypatch.setattr(ctxmod, "process_tree_rss", lambda _pid: 100 * 2**20)
    session = BrowserSession(executable=CHROMIUM, headless=True, recycle_jobs=2)
    await session.load(fake_flow.storage_state())
    try:
        for _ in range(3):
            async with session.page() as page:
                await page.goto(fake_flow.home)
                assert "signin" not in page.url
            await session.job_done()
        assert session.launches == 1  # one browser for every job
        assert session.contexts == 2  # recycled after two jobs, cookies carried over
        # the browser dies (OOM killer, crash): the next job gets a new one
        browser = session._browser
        assert browser is not None
        await browser.close()
        async with session.page() as page:
            await page.goto(fake_flow.home)
            assert "signin" not in page.url  # the login survived the relaunch
        assert session.launches == 2
    finally:
        await session.close()


async def test_memory_growth_recycles_early(fake_flow: FakeFlow,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    session = BrowserSession(executable=CHROMIUM, headless=True, recycle_jobs=1000)
    await session.load(fake_flow.storage_state())
    sizes = iter([100, 120, 400, 100])
    monkeypatch.setattr(ctxmod, "process_tree_rss", lambda _pid: next(sizes) * 2**20)
    try:
        for _ in range(4):
            async with session.page() as page:
                await page.goto(fake_flow.home)
            await session.job_done()
        assert session.contexts == 2  # the third job's 400 MB (> 1.5 x 100) forced a recycle
    finally:
        await session.close()


async def test_headed_without_display_runs_its_own_xvfb(fake_flow: FakeFlow,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    session = BrowserSession(executable=CHROMIUM, headless=False, recycle_jobs=10)
    await session.load(fake_flow.storage_state())
    try:
        async with session.page() as page:
            await page.goto(fake_flow.home)
            # none of the tells by which automation announces itself
            assert await page.evaluate("navigator.webdriver") is False
            assert "HeadlessChrome" not in await page.evaluate("navigator.userAgent")
        display = session.display
        assert display is not None and display.running and display.display
        first = display.display
        browser = session._browser
        assert browser is not None
        await browser.close()  # the browser dies; the relaunch uses the same display
        async with session.page() as page:
            await page.goto(fake_flow.home)
        assert session.launches == 2 and display.display == first
    finally:
        await session.close()
    assert not display.running


async def test_a_display_passed_in_is_the_callers(fake_flow: FakeFlow,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    display = VirtualDisplay()
    await display.start()
    try:
        session = BrowserSession(executable=CHROMIUM, headless=False, recycle_jobs=10,
                                 display=display)
        await session.load(fake_flow.storage_state())
        async with session.page() as page:
            await page.goto(fake_flow.home)
            # the worker's memory figures walk this tree: Xvfb is in it (setpriv execs it)
            assert display.pid in process_tree(os.getpid())
        await session.close()
        assert display.running  # a browser per job on one display: the display stays up
    finally:
        await display.stop()


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    # Chromium's children rewrite their command line into one space-separated string
    return raw.replace(b"\0", b" ").decode(errors="replace").split()


async def test_the_worker_browser_runs_lean(fake_flow: FakeFlow,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-lived worker's Chromium starts only the processes a page needs: one renderer,
    no GPU or network process of its own, no WebUI renderer for the address bar, no crash
    handlers; Playwright's own disabled features stay disabled beside ours; the node driver
    gets its small young generation without the worker's environment keeping it."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("NODE_OPTIONS", "--stack-trace-limit=20")
    session = BrowserSession(executable=CHROMIUM, headless=False, recycle_jobs=10)
    await session.load(fake_flow.storage_state())
    try:
        async with session.page() as page:
            await page.goto(fake_flow.home)
            await page.wait_for_timeout(500)  # preloads, if any, start right after a load
            tree = process_tree(os.getpid())
            lines = {pid: _cmdline(pid) for pid in tree}
            node = next(pid for pid, args in lines.items()
                        if args and args[0].endswith("/node"))
            node_env = Path(f"/proc/{node}/environ").read_bytes().split(b"\0")
    finally:
        await session.close()
    assert os.environ["NODE_OPTIONS"] == "--stack-trace-limit=20"
    chromium = {pid: args for pid, args in lines.items()
                if args and "chrom" in args[0].rsplit("/", 1)[-1]}
    types = sorted(next((a.split("=", 1)[1] for a in args if a.startswith("--type=")),
                        "browser") for args in chromium.values())
    assert types.count("renderer") == 1, types
    assert "gpu-process" not in types and "crashpad-handler" not in types, types
    assert not any("crashpad" in args[0] for args in chromium.values())
    services = " ".join(a for args in chromium.values() for a in args
                        if a.startswith("--utility-sub-type="))
    assert "NetworkService" not in services and "on_device_model" not in services, services
    assert not any("--top-chrome-webui" in args for args in chromium.values())
    browser = next(args for args in chromium.values() if not any(
        a.startswith("--type=") for a in args))
    disabled = [a for a in browser if a.startswith("--disable-features=")][-1]
    assert "MediaRouter" in disabled and "SpareRendererForSitePerProcess" in disabled
    assert b"NODE_OPTIONS=--stack-trace-limit=20 --max-semi-space-size=1" in node_env
