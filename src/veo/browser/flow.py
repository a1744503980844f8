"""The Flow driver: the steps of one generation in the Flow web UI.

landing (login check, overlays) → New project → settings (mode, aspect, outputs, model) →
frames → prompt (real typing) → snapshot tiles → submit → wait for THIS generation's new tiles
→ download each through the menu. Every failure is classified (SPEC §4) and leaves a screenshot
and the page HTML behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from veo import logs
from veo.browser import selectors as sel
from veo.errors import GenerationFailed, LoginRequired

log = logs.get_logger("veo.browser.flow")

STEP_TIMEOUT = 15.0  # seconds an expected element may take to appear before it is drift
POLL = 0.25  # seconds between looks at the tiles while a generation runs
_PERCENT = re.compile(r"(\d{1,3})%")

# failure class -> worth another try?
RETRYABLE = {"rate_limited": True, "unusual_activity": True, "generation_failed": True,
             "timeout": True, "policy": False, "insufficient_credits": False,
             "selector_drift": False}


class FlowFailure(Exception):
    def __init__(self, kind: str, message: str, step: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.step = step


@dataclasses.dataclass(frozen=True)
class ClipRequest:
    prompt: str
    aspect_ratio: str
    count: int
    model_label: str | None
    first_frame: tuple[bytes, str] | None = None
    last_frame: tuple[bytes, str] | None = None


Progress = Callable[[int], Awaitable[None]]
Debug = Callable[[Page, str, str], Awaitable[dict[str, str]]]


async def is_login_page(page: Page) -> bool:
    if any(marker in page.url for marker in sel.LOGIN_URL_MARKERS):
        return True
    for candidate in sel.LOGIN_DOM:
        try:
            if await page.locator(candidate).first.is_visible():
                return True
        except PlaywrightError:
            continue
    return False


async def dismiss_overlays(page: Page) -> None:
    for candidate in sel.OVERLAY_DISMISS:
        loc = page.locator(candidate)
        try:
            for i in range(await loc.count()):
                if await loc.nth(i).is_visible():
                    await loc.nth(i).click(timeout=2_000)
        except PlaywrightError:
            continue


async def find(page: Page, candidates: sel.Candidates, step: str, root: Any = None) -> Any:
    """The first visible match of an ordered list of selectors, or selector drift."""
    scope = root or page
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        for candidate in candidates:
            loc = scope.locator(candidate).first
            try:
                if await loc.is_visible():
                    return loc
            except PlaywrightError:
                continue
        if await is_login_page(page):
            raise LoginRequired(f"Flow showed a sign-in page at step {step}")
        if time.monotonic() > deadline:
            raise FlowFailure("selector_drift", f"no element for step {step!r} appeared "
                              f"(tried {', '.join(candidates)})", step)
        await asyncio.sleep(0.1)


async def click(page: Page, candidates: sel.Candidates, step: str, root: Any = None) -> None:
    loc = await find(page, candidates, step, root=root)
    try:
        await loc.click(timeout=4_000)
    except PlaywrightTimeout:
        # something covers it (toast, notice): clear the known overlays and try once more
        await dismiss_overlays(page)
        await loc.click(timeout=4_000)


class FlowDriver:
    def __init__(self, home_url: str, timeout: float) -> None:
        self.home_url = home_url
        self.timeout = timeout

    async def generate(self, page: Page, req: ClipRequest, progress: Progress,
                       downloads: Path) -> list[Path]:
        """Make ``req.count`` videos; return their files in variant order."""
        step = "landing"
        try:
            await page.goto(self.home_url, wait_until="domcontentloaded")
            if await is_login_page(page):
                raise LoginRequired("Flow redirected to a sign-in page")
            await dismiss_overlays(page)
            step = "new_project"
            await click(page, sel.NEW_PROJECT, step)
            await page.wait_for_url(re.compile(r".*/project/.*"), timeout=STEP_TIMEOUT * 1000)
            await dismiss_overlays(page)
            if await is_login_page(page):
                raise LoginRequired("Flow redirected to a sign-in page")
            step = "credits"
            await self._check_credits(page)
            step = "settings"
            await self._settings(page, req)
            if req.first_frame:
                step = "frames"
                await self._frame(page, "start", req.first_frame, downloads)
                if req.last_frame:
                    await self._frame(page, "end", req.last_frame, downloads)
            step = "prompt"
            editor = await find(page, sel.PROMPT, step)
            await editor.click()
            await page.keyboard.insert_text(req.prompt)  # a trusted input event, as typing
            step = "submit"
            before = set(await self._tile_ids(page))
            submit = await find(page, sel.SUBMIT, step)
            deadline = time.monotonic() + STEP_TIMEOUT
            while not await submit.is_enabled():
                if time.monotonic() > deadline:
                    await self._check_credits(page)
                    raise FlowFailure("selector_drift", "the submit button never enabled", step)
                await asyncio.sleep(0.1)
            await click(page, sel.SUBMIT, step)
            step = "wait"
            new = await self._wait_tiles(page, before, req.count, progress)
            step = "download"
            return [await self._download(page, tile_id, downloads) for tile_id in new]
        except FlowFailure:
            raise
        except LoginRequired:
            raise
        except PlaywrightTimeout as exc:
            if await is_login_page(page):
                raise LoginRequired(f"Flow showed a sign-in page at step {step}") from exc
            raise FlowFailure("selector_drift", f"step {step!r} timed out: "
                              f"{str(exc).splitlines()[0][:200]}", step) from exc
        except PlaywrightError as exc:
            raise FlowFailure("generation_failed", f"browser error at step {step!r}: "
                              f"{str(exc).splitlines()[0][:200]}", step) from exc

    async def _check_credits(self, page: Page) -> None:
        for candidate in sel.CREDITS_WARNING:
            if await page.locator(candidate).first.is_visible():
                raise FlowFailure("insufficient_credits", "the account is out of Flow credits",
                                  "credits")

    async def _settings(self, page: Page, req: ClipRequest) -> None:
        await click(page, sel.SETTINGS, "settings")
        menu_step = "settings_menu"
        await click(page, sel.MODE_FRAMES if req.first_frame else sel.MODE_TEXT, menu_step)
        await click(page, sel.ASPECT[req.aspect_ratio], menu_step)
        await click(page, sel.count(req.count), menu_step)
        if req.model_label:
            await click(page, sel.model(req.model_label), menu_step)
        await page.keyboard.press("Escape")

    async def _frame(self, page: Page, slot: str, frame: tuple[bytes, str],
                     downloads: Path) -> None:
        data, mime = frame
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(mime, "png")
        path = downloads / f"{slot}.{ext}"
        await asyncio.to_thread(path.write_bytes, data)
        await click(page, sel.FRAME_SLOT[slot], f"frame_{slot}")
        upload = await find(page, sel.UPLOAD_MEDIA, f"frame_{slot}_upload")
        async with page.expect_file_chooser() as chooser:
            await upload.click()
        await (await chooser.value).set_files(str(path))
        add = await find(page, sel.ADD_TO_PROMPT, f"frame_{slot}_add")
        deadline = time.monotonic() + 60  # Flow's own upload takes 20-30 s (research §1)
        while not await add.is_enabled():
            if time.monotonic() > deadline:
                raise FlowFailure("timeout", f"the {slot} frame upload never finished",
                                  f"frame_{slot}")
            await asyncio.sleep(0.1)
        await add.click()

    async def _tile_ids(self, page: Page) -> list[str]:
        ids: list[str] = await page.locator(sel.TILE).evaluate_all(
            f"els => els.map(e => e.getAttribute('{sel.TILE_ID}'))")
        return ids

    async def _wait_tiles(self, page: Page, before: set[str], count: int,
                          progress: Progress) -> list[str]:
        """Follow only the tiles this submit created; old tiles on the page are ignored."""
        deadline = time.monotonic() + self.timeout
        while True:
            if await is_login_page(page):
                raise LoginRequired("Flow showed a sign-in page while generating")
            tiles = await page.locator(sel.TILE).evaluate_all(
                f"""els => els.map(e => ({{id: e.getAttribute('{sel.TILE_ID}'),
                    text: e.innerText, video: !!e.querySelector('video')}}))""")
            new = [t for t in tiles if t["id"] not in before]
            if len(new) > count:
                new = new[:count]
            for t in new:
                for text, kind in sel.FAILURE_TEXTS:
                    if text in t["text"]:
                        message = " ".join(t["text"].split())[:300]
                        raise FlowFailure(kind, message, "wait")
            if len(new) == count and all(t["video"] for t in new):
                return [t["id"] for t in new]
            if new:
                pcts = [100 if t["video"] else int(m.group(1)) if (m := _PERCENT.search(
                    t["text"])) else 0 for t in new]
                await progress(sum(pcts) // count)
            else:
                await self._check_credits(page)
            if time.monotonic() > deadline:
                raise FlowFailure("timeout", f"the generation did not finish within "
                                  f"{self.timeout:.0f} s", "wait")
            await asyncio.sleep(POLL)

    async def _download(self, page: Page, tile_id: str, downloads: Path) -> Path:
        tile = page.locator(f"[{sel.TILE_ID}='{tile_id}']")
        await tile.scroll_into_view_if_needed()
        await tile.hover()
        await click(page, sel.DOWNLOAD_BUTTON, "download_menu", root=tile)
        item = await find(page, sel.DOWNLOAD_ORIGINAL, "download_item")
        async with page.expect_download(timeout=60_000) as info:
            await item.click()
        download = await info.value
        target = downloads / f"{tile_id}.mp4"
        await download.save_as(target)
        return target


def to_error(exc: FlowFailure, debug: dict[str, str]) -> GenerationFailed:
    return GenerationFailed(f"Flow {exc.kind.replace('_', ' ')}: {exc.message}", code=exc.kind,
                            retryable=RETRYABLE.get(exc.kind, True),
                            details={"step": exc.step, "debug": debug})


def temp_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="veo-flow-")
