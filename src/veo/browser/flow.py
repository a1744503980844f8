"""The Flow driver: one generation in the Flow web UI (flow.google.com), made the way a person
makes it, with the result read from the page's own network traffic.

    open a project (the login test) → clear blockers → model → settings radios, read back →
    frames uploaded and bound to the chips → prompt by real input → submit → the submit RPC's
    workflow id → status polls → signed URLs → download through the browser context (ftyp
    checked), the poster beside each video

The tile grid is a cross-check, and a fallback only where the page's answers cannot be read:
older tiles stay on the page, tiles of one batch may come in any order, and their texts are
translated. Every failure is classified (``FAILURE_CLASSES``); the caller keeps the debug files
and decides about pauses. ``canary`` walks the same steps up to, never including, the submit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page, Request, Response
from playwright.async_api import TimeoutError as PlaywrightTimeout

from veo import logs
from veo.browser import selectors as sel
from veo.errors import LoginRequired

log = logs.get_logger("veo.browser.flow")

STEP_TIMEOUT = 15.0  # seconds an expected element may take to appear before it is drift
# seconds a sign-in/unavailable/rejected address must hold before the login test believes it:
# the app hops there client-side, 0.2-0.4 s after a 200 document, and accounts pages redirect
SETTLE = 0.5
# seconds one click waits for its target to take pointer events; when something covers it the
# blockers are cleared and the click tried again, until the step's own timeout
CLICK_TIMEOUT = 0.6
# seconds a click whose target nothing covers may take. Playwright clicks only once the target
# has held still across animation frames, and Chromium paints a page whose window is not the
# front one at about a frame a second while something on it changes (headless and under Xvfb
# alike; pages' JS still sees itself focused). With FLOW_MAX_CONCURRENT=2 one page is always
# behind the other: its clicks are slow, not blocked, and clearing blockers does not help them
SLOW_CLICK_TIMEOUT = 5.0
MENU_WAIT = 5.0  # seconds the model menu may take to open after its trigger took the click
SUBMIT_RETRY = 3.0  # seconds without a submit request before a lost click is tried again
UPLOAD_TIMEOUT = 90.0  # seconds an upload may take to appear in the picker (Flow's take 20-30)
# seconds the grid may show a batch's videos before the URL answers are given up for the tiles
TILE_GRACE = 3.0
UNNAMED_AFTER = 3  # picker looks for the upload by name before taking the newest option
POLL = 0.1  # seconds between looks at the page while waiting for something
RESOLUTIONS = ("360p", "720p")  # what the settings pane offers; 1080p is a later upscale
MIME_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_TEXT_WITHOUT_ICONS = """els => els.map(e => {
  const c = e.cloneNode(true);
  c.querySelectorAll('mat-icon').forEach(i => i.remove());
  return c.textContent.replace(/\\s+/g, ' ').trim();
})"""
# whether something else is over the middle of the element (where Playwright clicks)
_COVERED = """e => {
  const r = e.getBoundingClientRect();
  if (!r.width || !r.height) return true;
  const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return top !== null && top !== e && !e.contains(top);
}"""
_RADIOS = """(els, groupSelector) => {
  const groups = [];
  return els.map((e, index) => {
    const g = e.closest(groupSelector);
    let group = groups.indexOf(g);
    if (group < 0) { groups.push(g); group = groups.length - 1; }
    const c = e.cloneNode(true);
    c.querySelectorAll('mat-icon').forEach(i => i.remove());
    return {index, group, text: c.textContent.replace(/\\s+/g, ' ').trim(),
            icons: [...e.querySelectorAll('mat-icon')].map(i => i.textContent.trim()),
            checked: e.getAttribute('aria-checked') === 'true',
            disabled: e.getAttribute('aria-disabled') === 'true' || e.disabled === true};
  });
}"""


class LoginState(enum.StrEnum):
    SIGNED_IN = "signed_in"
    LOGIN_REQUIRED = "login_required"  # /about or an accounts page (sign-in, re-verification)
    UNAVAILABLE = "unavailable"  # the account has no Flow access
    REJECTED = "rejected"  # Google refused the browser as automated


@dataclasses.dataclass(frozen=True)
class ClipRequest:
    prompt: str
    aspect_ratio: str = "16:9"
    resolution: str = "720p"
    duration_seconds: int = 8
    count: int = 1  # outputs per prompt, x1..x4: one submission makes them all
    model_label: str | None = None  # as the model menu names it; None keeps the page's choice
    first_frame: tuple[bytes, str] | None = None  # (bytes, MIME type)
    last_frame: tuple[bytes, str] | None = None

    def check(self) -> None:
        """Refuse what Flow's settings cannot express, before touching the page."""
        if not self.prompt.strip():
            raise ValueError("a Flow clip needs a prompt")
        if self.aspect_ratio not in sel.ASPECT_ICONS:
            raise ValueError(f"Flow makes videos in {', '.join(sel.ASPECT_ICONS)}, "
                             f"not {self.aspect_ratio}")
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"Flow generates {' or '.join(RESOLUTIONS)} (1080p is an upscale "
                             f"of a finished video), not {self.resolution}")
        if not 1 <= self.count <= 4:
            raise ValueError(f"Flow makes 1 to 4 outputs per prompt, not {self.count}")
        if not 1 <= self.duration_seconds <= 60:
            raise ValueError(f"no Flow duration of {self.duration_seconds} s")


@dataclasses.dataclass(frozen=True)
class FlowVideo:
    path: Path
    poster: Path | None  # a JPEG, when the page named one and it was a JPEG
    workflow_id: str  # the submission that made it
    media_id: str = ""


class FlowFailure(Exception):
    def __init__(self, kind: str, message: str, step: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.step = step


@dataclasses.dataclass(frozen=True)
class FailureClass:
    retryable: bool  # worth another attempt of the clip
    cool_down: bool  # the account should rest before any generation (Google said slow down)


FAILURE_CLASSES: dict[str, FailureClass] = {
    "policy": FailureClass(retryable=False, cool_down=False),
    "insufficient_credits": FailureClass(retryable=False, cool_down=False),
    "rate_limited": FailureClass(retryable=True, cool_down=True),
    "unusual_activity": FailureClass(retryable=True, cool_down=True),
    "generation_failed": FailureClass(retryable=True, cool_down=False),
    "selector_drift": FailureClass(retryable=False, cool_down=False),
    "timeout": FailureClass(retryable=True, cool_down=False),
    "account_unavailable": FailureClass(retryable=False, cool_down=False),
}
RETRYABLE: dict[str, bool] = {k: v.retryable for k, v in FAILURE_CLASSES.items()}
COOL_DOWN: frozenset[str] = frozenset(k for k, v in FAILURE_CLASSES.items() if v.cool_down)


@dataclasses.dataclass(frozen=True)
class CanaryReport:
    ok: bool
    step: str | None  # the step that failed, None when the walk went through
    fallback_used: list[str]  # steps whose first-choice selector did not match
    matched: dict[str, int]  # step -> index of the selector that matched (0 = first choice)
    message: str | None = None
    insufficient_credits: bool = False  # the warning stood where submit belongs (not drift)


Progress = Callable[[int], Awaitable[None]]


def classify_url(url: str) -> LoginState | None:
    """The login state an address means, or None for an address of the app itself."""
    parts = urlsplit(url)
    path = re.sub(r"^/u/\d+(?=/)", "", parts.path)
    host = (parts.hostname or "").lower()
    if any(path.startswith(p) for p in sel.REJECTED_PATHS):
        return LoginState.REJECTED
    if host in sel.ACCOUNTS_HOSTS or any(path.startswith(p) for p in sel.ACCOUNTS_PATHS):
        return LoginState.LOGIN_REQUIRED
    if any(path == p or path.startswith(p + "/") for p in sel.ABOUT_PATHS):
        return LoginState.LOGIN_REQUIRED
    if any(path == p or path.startswith(p + "/") for p in sel.UNAVAILABLE_PATHS):
        return LoginState.UNAVAILABLE
    return None


def login_failure(state: LoginState, step: str) -> Exception:
    if state is LoginState.LOGIN_REQUIRED:
        return LoginRequired(f"Flow showed a sign-in page (step {step})")
    if state is LoginState.UNAVAILABLE:
        return FlowFailure("account_unavailable", "Flow is not available to this Google account "
                           "(it landed on /unavailable)", step)
    return FlowFailure("account_unavailable", "Google rejected this browser as automated "
                       "(/v3/signin/rejected); Flow needs a headed browser (FLOW_HEADLESS=false)",
                       step)


# ---- the page's RPCs -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Reply:
    rpc: str
    payload: Any  # the decoded answer, None when the RPC failed
    error: Any  # the status entry of a failed RPC (or ["http", status])
    args: Any  # the decoded arguments the page sent, when known


def parse_batchexecute(body: str) -> list[list[Any]]:
    """The ``wrb.fr`` entries of a batchexecute answer (XSSI guard, length-prefixed chunks)."""
    text = body.lstrip()
    if text.startswith(")]}'"):
        text = text[4:]
    decoder = json.JSONDecoder()
    skip = re.compile(r"[\s\d]*")
    out: list[list[Any]] = []
    pos = 0
    while pos < len(text):
        pos = skip.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= len(text):
            break
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        if isinstance(value, list):
            out.extend(e for e in value if isinstance(e, list) and len(e) > 2
                       and e[0] == "wrb.fr")
    return out


def _rpc_ids(url: str) -> list[str]:
    query = parse_qs(urlsplit(url).query)
    return [i for v in query.get("rpcids", []) for i in v.split(",") if i]


def _request_args(post_data: str | None) -> dict[str, Any]:
    """rpc id -> the arguments the page sent (f.req = [[[rpc, "<json>", null, "generic"]]])."""
    if not post_data:
        return {}
    try:
        calls = json.loads(parse_qs(post_data).get("f.req", ["[]"])[0])[0]
        return {c[0]: json.loads(c[1]) if isinstance(c[1], str) else c[1] for c in calls}
    except (ValueError, IndexError, TypeError, KeyError):
        return {}


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, list):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)


def _strings(value: Any) -> list[str]:
    return [v for v in _walk(value) if isinstance(v, str)]


# an identifier: no spaces, at least one digit (so no enum name like STATUS_PENDING)
_ID = re.compile(r"^(?=.*\d)[A-Za-z0-9][A-Za-z0-9_\-.:]{7,}$")
_PERCENT = re.compile(r"(\d{1,3})\s*%")
_VIDEO_TILES = """els => els.map(e => {
  const v = e.querySelector('video'), i = e.querySelector('img');
  return [v ? v.getAttribute('src') : null,
          (v && v.getAttribute('poster')) || (i ? i.getAttribute('src') : null)];
})"""


def _submission_ids(payload: Any) -> tuple[str, list[str]] | None:
    """(workflow id, media ids in the order the answer lists them) of a submit answer: its
    id-like strings in order, the first naming the workflow."""
    ids = list(dict.fromkeys(s for s in _strings(payload) if _ID.match(s)))
    if len(ids) < 2:
        return None
    return ids[0], ids[1:]


def _records(payload: Any, ids: list[str]) -> dict[str, Any]:
    """The records of an answer that name one of ``ids``: a list that begins with the id, or
    an object that holds it."""
    wanted = set(ids)
    out: dict[str, Any] = {}
    for node in _walk(payload):
        if isinstance(node, list) and node and isinstance(node[0], str) and node[0] in wanted:
            out.setdefault(node[0], node)
        elif isinstance(node, dict):
            for value in node.values():
                if isinstance(value, str) and value in wanted:
                    out.setdefault(value, node)
                    break
    return out


@dataclasses.dataclass(frozen=True)
class _Grid:
    """What the tile grid showed before the submit."""

    videos: frozenset[str]  # src of every video tile, without the query (signatures change)
    errors: int
    tiles: int


async def _fresh_tiles(page: Page, grid: _Grid) -> list[tuple[str, str | None]]:
    """(video src, poster) of the video tiles that were not on the page before the submit,
    in grid order (newest first)."""
    tiles: list[list[str | None]] = await page.locator(sel.TILE_VIDEO_BOX).evaluate_all(
        _VIDEO_TILES)
    return [(src, poster) for src, poster in tiles
            if src and src.split("?", 1)[0] not in grid.videos]


def _match_tiles(base: str, media: list[str],
                 fresh: list[tuple[str, str | None]]) -> list[tuple[str, str, str | None]]:
    """Tiles in record order where their URLs name the media ids, else in grid order."""
    by_media = {mid: next((t for t in fresh if mid in t[0]), None) for mid in media}
    if all(by_media.values()):
        pairs = [(mid, by_media[mid]) for mid in media]
    else:
        pairs = list(zip(media, fresh[:len(media)], strict=True))
    return [(mid, urljoin(base, t[0]), urljoin(base, t[1]) if t[1] else None)
            for mid, t in pairs if t is not None]


async def _grid(page: Page) -> _Grid:
    srcs: list[str] = await page.locator(sel.TILE_VIDEO).evaluate_all(
        "els => els.map(e => e.getAttribute('src') || '')")
    return _Grid(frozenset(src.split("?", 1)[0] for src in srcs),
                 await page.locator(sel.TILE_ERROR).count(),
                 await page.locator(sel.ANY_TILE).count())


def classify_error(error: Any, at_submit: bool) -> tuple[str, str]:
    """(failure class, message) for a failed RPC's status entry or a failed record."""
    strings = _strings(error)
    reasons = [r for s in strings for r in sel.REASON.findall(s)]
    code = error[0] if isinstance(error, list) and error and isinstance(error[0], int) else None
    http = error[1] if isinstance(error, list) and error[:1] == ["http"] else None
    message = "; ".join(dict.fromkeys(reasons + [s for s in strings if not sel.REASON.search(s)
                                                 and " " in s]))[:300] or json.dumps(error)[:200]
    kind = next((k for prefix, k in sel.REASONS if any(r.startswith(prefix) for r in reasons)),
                None)
    if kind is None:
        low = " ".join(strings).lower()
        kind = next((k for text, k in sel.FAILURE_TEXTS if text.lower() in low), None)
    # PERMISSION_DENIED at submit is how reCAPTCHA refusals come, whatever reason they carry
    if at_submit and (code == 7 or http == 403) and kind in (None, "generation_failed"):
        kind = "unusual_activity"
    if kind is None and (code == 8 or http == 429):
        kind = "rate_limited"
    return kind or "generation_failed", message


class _Traffic:
    """The page's batchexecute requests and answers, as they happen."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.replies: asyncio.Queue[_Reply] = asyncio.Queue()
        self.submits_sent = 0
        self.submit_seen = asyncio.Event()
        self.rpcs_sent: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        page.on("request", self._on_request)
        page.on("response", self._on_response)

    def close(self) -> None:
        self.page.remove_listener("request", self._on_request)
        self.page.remove_listener("response", self._on_response)
        for task in self._tasks:
            task.cancel()

    def _on_request(self, request: Request) -> None:
        if sel.BATCHEXECUTE_PATH not in request.url:
            return
        ids = _rpc_ids(request.url)
        self.rpcs_sent.extend(ids)
        if any(i in sel.SUBMIT_RPCS for i in ids):
            self.submits_sent += 1
            self.submit_seen.set()

    def _on_response(self, response: Response) -> None:
        if sel.BATCHEXECUTE_PATH not in response.url:
            return
        task = asyncio.get_running_loop().create_task(self._read(response))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, response: Response) -> None:
        ids = _rpc_ids(response.url)
        try:
            args = _request_args(response.request.post_data)
            body = await response.text()
        except PlaywrightError:  # the page went away meanwhile
            return
        entries = parse_batchexecute(body)
        if not entries and response.status >= 400:
            for rpc in ids:
                self.replies.put_nowait(_Reply(rpc, None, ["http", response.status],
                                               args.get(rpc)))
        for entry in entries:
            rpc = str(entry[1])
            payload = None
            if isinstance(entry[2], str):
                with contextlib.suppress(ValueError):
                    payload = json.loads(entry[2])
            error = (entry[5] if len(entry) > 5 else None) if payload is None else None
            self.replies.put_nowait(_Reply(rpc, payload, error if payload is None else None,
                                           args.get(rpc)))

    async def next(self, wait: float) -> _Reply | None:
        try:
            return await asyncio.wait_for(self.replies.get(), wait)
        except TimeoutError:
            return None


# ---- walking the page ------------------------------------------------------------------------

def _norm(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split())


def _norm_model(text: str) -> str:
    text = re.sub(r"[\u2010-\u2015\u2212]", "-", text)
    return " ".join(sel.MODEL_TAG.sub(" ", text).split()).casefold()


def _number(pattern: re.Pattern[str], text: str) -> int | None:
    m = pattern.match(text)
    if not m:
        return None
    return int(next(g for g in m.groups() if g is not None))


def _classify_groups(radios: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Settings radio groups by what they hold: icons for media, type and aspect; the shape of
    their labels for resolution, outputs and duration (labels are translated, numbers not)."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in radios:
        groups.setdefault(r["group"], []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for members in groups.values():
        icons = {i for r in members for i in r["icons"]}
        texts = [r["text"] for r in members]
        if icons & set(sel.MEDIA_ICONS):
            name = "media"
        elif icons & set(sel.TYPE_ICONS):
            name = "type"
        elif icons & set(sel.ASPECT_ICONS.values()) or all(sel.ASPECT_TEXT.match(t)
                                                            for t in texts):
            name = "aspect"
        elif all(sel.RESOLUTION_TEXT.match(t) for t in texts):
            name = "resolution"
        elif all(sel.OUTPUTS_TEXT.match(t) for t in texts):
            name = "outputs"
        elif all(sel.DURATION_TEXT.match(t) for t in texts):
            name = "duration"
        else:
            continue
        out.setdefault(name, members)
    return out


_ANY_BLOCKER = ", ".join((*sel.PROMO_CLOSE, sel.MODAL_DIALOG, *sel.COOKIE_BUTTON,
                          *sel.AGENT_MODE_ON))


class _Walk:
    """One page, walked step by step; remembers which selector of each step matched."""

    def __init__(self, page: Page, step_timeout: float) -> None:
        self.page = page
        self.step_timeout = step_timeout
        self.matched: dict[str, int] = {}
        self.fallback_used: list[str] = []

    def _record(self, step: str, index: int) -> None:
        self.matched[step] = index
        if index > 0 and step not in self.fallback_used:
            self.fallback_used.append(step)

    async def visible(self, candidates: sel.Candidates, step: str | None = None,
                      scope: Locator | None = None) -> Locator | None:
        """The visible matches of the first candidate that has any, else None."""
        found = await self._scan(candidates, scope)
        if found is not None and found[0] > 0:
            # the element may have mounted while the earlier candidates were being tried: look
            # again, so a late render is not reported as a fallback
            found = await self._scan(candidates[:found[0]], scope) or found
        if found is None:
            return None
        if step:
            self._record(step, found[0])
        return found[1]

    async def _scan(self, candidates: sel.Candidates,
                    scope: Locator | None) -> tuple[int, Locator] | None:
        for i, css in enumerate(candidates):
            loc = (scope or self.page).locator(css).filter(visible=True)
            try:
                if await loc.count():
                    return i, loc
            except PlaywrightError:
                continue
        return None

    async def find(self, step: str, candidates: sel.Candidates, scope: Locator | None = None,
                   within: float | None = None) -> Locator:
        limit = within or self.step_timeout
        deadline = time.monotonic() + limit
        looks = 0
        while True:
            loc = await self.visible(candidates, step, scope)
            if loc is not None:
                return loc
            await self.guard(step)
            if time.monotonic() > deadline:
                raise FlowFailure("selector_drift", f"no element for step {step!r} appeared "
                                  f"within {limit:.0f} s (tried: {' | '.join(candidates)})",
                                  step)
            looks += 1
            if looks % 5 == 0:
                await self.clear_blockers()
            await asyncio.sleep(POLL)

    async def click(self, step: str, candidates: sel.Candidates,
                    scope: Locator | None = None, which: str = "first") -> Locator:
        deadline = time.monotonic() + self.step_timeout
        await self.clear_blockers()
        while True:
            found = await self.find(step, candidates, scope)
            target = found.last if which == "last" else found.first
            if await self._click(target):
                return target
            if time.monotonic() > deadline:
                raise FlowFailure("selector_drift", f"step {step!r}: the element never "
                                  "took a click (something stays over it)", step)
            await self.clear_blockers()

    async def _click(self, target: Locator) -> bool:
        """Click ``target``; False when it did not take the click because something stays over
        it (the caller clears blockers and tries again). A click that times out with nothing
        over its target is waiting for a slow frame, so it gets longer instead."""
        try:
            await target.click(timeout=CLICK_TIMEOUT * 1000)
            return True
        except PlaywrightTimeout:
            if await self._covered(target):
                return False
        try:
            await target.click(timeout=SLOW_CLICK_TIMEOUT * 1000)
            return True
        except PlaywrightTimeout:
            return False

    async def _covered(self, target: Locator) -> bool:
        try:
            return bool(await target.evaluate(_COVERED, timeout=1000))
        except PlaywrightError:
            return True  # gone or not laid out: the caller's usual recovery applies

    async def _tap(self, loc: Locator) -> bool:
        try:
            return await self._click(loc)
        except PlaywrightError:
            return False

    async def guard(self, step: str) -> None:
        """Stop at once when the page went to a sign-in, unavailable or rejection page."""
        state = classify_url(self.page.url)
        if state is None and await self.visible((sel.UNAVAILABLE_SCREEN,)):
            state = LoginState.UNAVAILABLE
        if state is not None:
            raise login_failure(state, step)

    async def clear_blockers(self) -> list[str]:
        """Close what covers the composer: promo dialogs, the cookie bar, agent mode."""
        cleared: list[str] = []
        for _ in range(4):  # clearing one may uncover the next
            # one look for all of them first: this runs before nearly every click
            if not await _count(self.page.locator(_ANY_BLOCKER).filter(visible=True)):
                break
            close = await self.visible(sel.PROMO_CLOSE, "promo_close")
            if close is not None and await self._tap(close.first):
                cleared.append("promo")
                continue
            loose = await self.visible((sel.MODAL_DIALOG,))
            if loose is not None:
                await self.page.keyboard.press("Escape")
                cleared.append("promo")
                await asyncio.sleep(POLL)
                continue
            cookie = await self.visible(sel.COOKIE_BUTTON, "cookie_bar")
            if cookie is not None and await self._tap(cookie.first):
                cleared.append("cookie_bar")
                continue
            agent = await self.visible(sel.AGENT_MODE_ON, "agent_mode")
            if agent is not None and await self._tap(agent.first):
                cleared.append("agent_mode")
                continue
            break
        return cleared

    async def close_overlays(self) -> None:
        """Close open panes and menus (Escape closes the top one, as CDK overlays do)."""
        for _ in range(4):
            if not await self.visible((sel.OVERLAY_BACKDROP,)):
                return
            await self.page.keyboard.press("Escape")
            await asyncio.sleep(0.05)

    # -- login ---------------------------------------------------------------------------------

    async def open_project(self, home_url: str) -> LoginState:
        """The login test: open Flow, get to a project, wait for the settings trigger; only when
        it never comes, classify the address the page settled on."""
        response = await self.page.goto(home_url, wait_until="domcontentloaded")
        status = response.status if response is not None else None
        started = time.monotonic()
        deadline = started + self.step_timeout
        seen: LoginState | None = None
        since = started
        clicked_at: float | None = None
        while True:
            if await self.visible(sel.SETTINGS_TRIGGER, "settings_trigger"):
                return LoginState.SIGNED_IN
            state = classify_url(self.page.url)
            if state is None and await self.visible((sel.UNAVAILABLE_SCREEN,)):
                state = LoginState.UNAVAILABLE
            now = time.monotonic()
            if state is None and status == 403 and now - started >= SETTLE:
                state = LoginState.REJECTED  # Google answers a refused browser 403 at once
            if state != seen:
                seen, since = state, now
            elif state is not None and now - since >= SETTLE:
                return state
            if state is None:
                # agent mode hides the trigger; a promo covers the new-project button
                await self.clear_blockers()
                on_project = "/project/" in urlsplit(self.page.url).path
                if not on_project and (clicked_at is None or now - clicked_at > 5):
                    new = await self.visible(sel.NEW_PROJECT, "new_project")
                    if new is not None and await self._tap(new.first):
                        clicked_at = now
            if now > deadline:
                if state is not None:
                    return state
                raise FlowFailure("selector_drift", "the settings trigger never appeared on a "
                                  f"Flow page ({urlsplit(self.page.url).path})", "login")
            await asyncio.sleep(POLL)

    # -- settings ------------------------------------------------------------------------------

    async def open_settings(self) -> Locator:
        pane = await self.visible(sel.SETTINGS_PANE, "settings_pane")
        if pane is not None:
            return pane.first
        await self.clear_blockers()
        await self.click("settings_trigger", sel.SETTINGS_TRIGGER)
        return (await self.find("settings_pane", sel.SETTINGS_PANE)).first

    async def _texts(self, loc: Locator) -> list[str]:
        texts: list[str] = await loc.evaluate_all(_TEXT_WITHOUT_ICONS)
        return texts

    async def _model_trigger(self) -> Locator:
        """The model menu's button: a composer chip in some builds, in the settings pane in
        others, which is opened when the button is not showing."""
        trigger = await self.visible(sel.MODEL_TRIGGER, "model_trigger")
        if trigger is None:
            await self.open_settings()
            trigger = await self.find("model_trigger", sel.MODEL_TRIGGER)
        return trigger.first

    async def choose_model(self, label: str) -> str:
        """Pick ``label`` from the model menu (reached from the pane or a composer chip)."""
        want = _norm_model(label)
        deadline = time.monotonic() + self.step_timeout
        while True:
            await self.clear_blockers()
            # looked up afresh every round: a click that did not land closes every overlay
            # below, the settings pane that may hold the trigger included
            trigger = await self._model_trigger()
            shown = (await self._texts(trigger))[0]
            if _norm_model(shown) == want:
                return shown
            if time.monotonic() > deadline:
                raise FlowFailure("selector_drift", f"the model did not become {label!r} "
                                  f"(the page shows {shown!r})", "model")
            if await self._tap(trigger):
                try:
                    items = await self.find("model_item", sel.MODEL_ITEM,
                                            within=min(self.step_timeout, MENU_WAIT))
                except FlowFailure:
                    if time.monotonic() > deadline:
                        raise
                    items = None  # the click went to something that mounted at that instant
                if items is not None:
                    texts = await self._texts(items)
                    same = [i for i, t in enumerate(texts) if _norm_model(t) == want]
                    # the plain offer before its "[Lower Priority]" twin, unless that was asked
                    exact = [i for i in same if bool(sel.MODEL_TAG.search(texts[i]))
                             == bool(sel.MODEL_TAG.search(label))]
                    pick = next(iter(exact or same), None)
                    if pick is None:
                        await self.close_overlays()
                        raise FlowFailure("selector_drift", f"the model menu offers no "
                                          f"{label!r} (it offers: {', '.join(texts)})", "model")
                    if await self._tap(items.nth(pick)):
                        await asyncio.sleep(POLL)
                        continue  # read back from the trigger
            # a menu left open would take the next click on the trigger with its backdrop
            await self.close_overlays()

    async def set_radios(self, req: ClipRequest) -> dict[str, str]:
        """Choose the settings through the pane's radio groups and read them back."""
        aspect = req.aspect_ratio
        # (group, value, fits, may be absent): a build without media or type radios makes
        # video from frames anyway; one without resolution radios makes its default, 720p
        wanted: list[tuple[str, str, Callable[[dict[str, Any]], bool], bool]] = [
            ("media", "video", lambda r: sel.MEDIA_VIDEO in r["icons"], True),
            # there is no "text" type: text-to-video is Frames with no frame bound
            ("type", "frames", lambda r: sel.TYPE_FRAMES in r["icons"], True),
            ("aspect", aspect, lambda r: sel.ASPECT_ICONS[aspect] in r["icons"]
             or r["text"].replace(" ", "") == aspect, False),
            ("resolution", req.resolution, lambda r: _number(
                sel.RESOLUTION_TEXT, r["text"]) == int(req.resolution.rstrip("p")),
             req.resolution == "720p"),
            ("duration", f"{req.duration_seconds}s", lambda r: _number(
                sel.DURATION_TEXT, r["text"]) == req.duration_seconds, False),
            ("outputs", f"x{req.count}",
             lambda r: _number(sel.OUTPUTS_TEXT, r["text"]) == req.count, False),
        ]
        for _round in range(4 * len(wanted)):
            await self.clear_blockers()
            pane = await self.open_settings()
            radios: list[dict[str, Any]] = await pane.locator(sel.RADIO).evaluate_all(
                _RADIOS, sel.RADIO_GROUP)
            groups = _classify_groups(radios)
            pending = None
            for name, value, fits, optional in wanted:
                members = groups.get(name)
                if members is None:
                    if optional:
                        continue
                    raise FlowFailure("selector_drift", f"the settings pane has no {name} "
                                      "radio group", "settings")
                target = next((r for r in members if fits(r)), None)
                if target is None or target["disabled"]:
                    offered = ", ".join(r["text"] or "/".join(r["icons"]) for r in members
                                        if not r["disabled"])
                    raise FlowFailure("selector_drift", f"Flow's settings offer no {name} "
                                      f"{value} here (offered: {offered})", "settings")
                if not target["checked"]:
                    pending = target
                    break
            if pending is None:
                self.matched.setdefault("settings_radios", 0)
                return {name: next(r["text"] or "/".join(r["icons"]) for r in groups[name]
                                   if r["checked"]) for name, *_rest in wanted if name in groups}
            await self._tap(pane.locator(sel.RADIO).nth(pending["index"]))
            await asyncio.sleep(0.05)
        raise FlowFailure("selector_drift", "the settings radios did not take the choices",
                          "settings")

    # -- frames --------------------------------------------------------------------------------

    async def upload(self, path: Path) -> None:
        try:
            async with self.page.expect_file_chooser(
                    timeout=self.step_timeout * 1000) as chooser:
                await self.clear_blockers()
                await self.click("add_media", sel.ADD_MEDIA)
                await self.click("upload_item", sel.UPLOAD_ITEM)
                # a one-time consent dialog may stand between the menu item and the chooser
                deadline = time.monotonic() + self.step_timeout
                while not chooser.is_done() and time.monotonic() < deadline:
                    consent = await self.visible(sel.UPLOAD_CONSENT_ACCEPT, "upload_consent")
                    if consent is not None and not await self._tap(consent.first):
                        # a promo mounting late lands over the consent dialog and takes its
                        # clicks; the blockers exclude the consent itself
                        await self.clear_blockers()
                    await asyncio.sleep(POLL)
            files = await chooser.value
        except PlaywrightTimeout:
            raise FlowFailure("selector_drift", "no file chooser opened from the upload menu",
                              "upload") from None
        await files.set_files(str(path))

    async def bind_frame(self, slot: str, name: str) -> None:
        """Bind the uploaded image ``name`` to the Start or End chip through the picker."""
        step = f"frame_{slot}"
        bound = self.page.locator(sel.FRAME_CHIP_BOUND)
        before = await bound.count()
        deadline = time.monotonic() + UPLOAD_TIMEOUT
        attempts = 0
        while True:
            await self.close_overlays()
            # Start is the first empty chip; End is the last (Start may be bound already)
            await self.click("frame_chip", sel.FRAME_CHIP_EMPTY,
                             which="first" if slot == "start" else "last")
            await self.find("asset_picker", sel.ASSET_PICKER)
            search = await self.visible(sel.ASSET_SEARCH, "asset_search")
            attempts += 1
            if search is not None and attempts <= UNNAMED_AFTER:
                await search.first.fill(name)
            option = await self._asset(name, newest=attempts > UNNAMED_AFTER)
            if option is not None and await self._tap(option):
                break
            if time.monotonic() > deadline:
                raise FlowFailure("timeout", f"the uploaded {slot} frame never showed up in "
                                  "the asset picker", step)
            await asyncio.sleep(0.3)
        limit = time.monotonic() + self.step_timeout
        while await bound.count() <= before:
            if time.monotonic() > limit:
                raise FlowFailure("selector_drift", f"the {slot} chip did not show the picked "
                                  "image", step)
            await asyncio.sleep(POLL)

    async def _asset(self, name: str, newest: bool) -> Locator | None:
        """The picker option of the file called ``name``, waiting a moment for it. With
        ``newest``, a build that shows no names gets its first option: the picker, like the
        grid, lists the newest upload first."""
        deadline = time.monotonic() + 2.0
        if newest:
            options = await self.visible(sel.ASSET_OPTION)
            if options is not None:
                log.warning("flow.asset_unnamed", name=name)
                self._record("asset_option", len(sel.ASSET_OPTION))
                return options.first
        while time.monotonic() < deadline:
            for i, css in enumerate(sel.ASSET_OPTION):
                base = self.page.locator(css).filter(visible=True)
                named = base.filter(has_text=name).or_(
                    base.filter(has=self.page.locator(f"img[alt='{name}']"))).or_(
                    base.and_(self.page.locator(f"[aria-label='{name}']")))
                try:
                    if await named.count():
                        self._record("asset_option", i)
                        return named.first
                except PlaywrightError:
                    continue
            await asyncio.sleep(POLL)
        return None

    # -- compose and submit --------------------------------------------------------------------

    async def enter_prompt(self, prompt: str) -> Locator:
        want = _norm(prompt)
        for attempt in range(3):
            await self.close_overlays()
            editor = await self.click("editor", sel.EDITOR)
            if attempt:
                await self.page.keyboard.press("ControlOrMeta+a")
                await self.page.keyboard.press("Delete")
            # trusted input events; setting the DOM would not register with the editor
            await self.page.keyboard.insert_text(prompt)
            await asyncio.sleep(0.05)
            if _norm(await editor.inner_text()) == want:
                return editor
            await self.clear_blockers()
        raise FlowFailure("selector_drift", "the prompt editor did not take the text", "prompt")

    async def credits_warning(self) -> bool:
        return await self.visible(sel.CREDITS_WARNING, "credits_warning") is not None

    async def submit_button(self) -> Locator:
        """The enabled submit button; the credits warning in its place is not drift."""
        deadline = time.monotonic() + self.step_timeout
        looks = 0
        while True:
            if await self.credits_warning():
                raise FlowFailure("insufficient_credits", "Flow shows the insufficient-credits "
                                  "warning where submit belongs: the account is out of credits",
                                  "submit")
            found = await self.visible(sel.SUBMIT, "submit")
            if found is not None and await _enabled(found.first):
                return found.first
            await self.guard("submit")
            if time.monotonic() > deadline:
                what = "never enabled" if found is not None else "never appeared"
                raise FlowFailure("selector_drift", f"the submit button {what}", "submit")
            looks += 1
            if looks % 5 == 0:
                await self.clear_blockers()
            await asyncio.sleep(POLL)

    async def submit(self, traffic: _Traffic, editor: Locator, prompt: str) -> None:
        sent = traffic.submits_sent
        for _attempt in range(3):
            button = await self.submit_button()
            await self.clear_blockers()
            traffic.submit_seen.clear()
            if not await self._tap(button):
                await self.clear_blockers()
                continue
            # a click that landed on an overlay mounting at that instant sends nothing; the
            # editor still holding the prompt tells it apart from a submit this driver cannot
            # see (a request under another id) or a slow one
            deadline = time.monotonic() + SUBMIT_RETRY
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(traffic.submit_seen.wait(), POLL * 2)
                if traffic.submits_sent > sent:
                    return
                with contextlib.suppress(PlaywrightError):
                    if _norm(await editor.inner_text(timeout=1000)) != _norm(prompt):
                        return  # the page took it
            await self.clear_blockers()
        raise FlowFailure("selector_drift", "clicking submit sent no request", "submit")


async def _count(loc: Locator) -> int:
    """Matches of ``loc``; 0 while the page is between documents."""
    try:
        return await loc.count()
    except PlaywrightError:
        return 0


async def _enabled(button: Locator) -> bool:
    if not await button.is_enabled():  # also honours aria-disabled
        return False
    return sel.DISABLED_CLASS not in (await button.get_attribute("class") or "")


async def check_login(page: Page, home_url: str, *,
                      step_timeout: float = STEP_TIMEOUT) -> LoginState:
    """The one login test (worker and ``veo-auth check``): never the URL right after ``goto``,
    which is stale while the app hops client-side."""
    return await _Walk(page, step_timeout).open_project(home_url)


async def is_login_page(page: Page) -> bool:
    """A quick look at the page as it is now (no waiting): for loops that poll anyway, such as
    waiting for a person to finish signing in. ``check_login`` is the login test."""
    if classify_url(page.url) is LoginState.LOGIN_REQUIRED:
        return True
    for candidate in sel.LOGIN_DOM:
        with contextlib.suppress(PlaywrightError):
            if await page.locator(candidate).first.is_visible():
                return True
    return False


@dataclasses.dataclass(frozen=True)
class _Submission:
    workflow: str
    media: list[str]
    rpc: str


class FlowDriver:
    def __init__(self, home_url: str, timeout: float, step_timeout: float = STEP_TIMEOUT) -> None:
        self.home_url = home_url
        self.timeout = timeout  # seconds from submit to every signed URL
        self.step_timeout = step_timeout

    async def check_login(self, page: Page) -> LoginState:
        return await check_login(page, self.home_url, step_timeout=self.step_timeout)

    async def generate(self, page: Page, req: ClipRequest, progress: Progress,
                       downloads: Path) -> list[FlowVideo]:
        """Make ``req.count`` videos in one submission; return them in the order the page's
        records list them. Raises ``FlowFailure`` or ``LoginRequired``."""
        req.check()
        walk = _Walk(page, self.step_timeout)
        traffic = _Traffic(page)
        step = "login"
        try:
            state = await walk.open_project(self.home_url)
            if state is not LoginState.SIGNED_IN:
                raise login_failure(state, step)
            step = "settings"
            await walk.clear_blockers()
            model = await walk.choose_model(req.model_label) if req.model_label else None
            chosen = await walk.set_radios(req)
            await walk.close_overlays()
            if await walk.credits_warning():
                raise FlowFailure("insufficient_credits", "Flow shows the insufficient-credits "
                                  "warning for these settings", step)
            for slot, frame in (("start", req.first_frame), ("end", req.last_frame)):
                if frame is not None:
                    step = f"frame_{slot}"
                    name = f"veo-{secrets.token_hex(4)}-{slot}.{MIME_EXT.get(frame[1], 'png')}"
                    await asyncio.to_thread((downloads / name).write_bytes, frame[0])
                    await walk.upload(downloads / name)
                    await walk.bind_frame(slot, name)
            step = "prompt"
            editor = await walk.enter_prompt(req.prompt)
            step = "submit"
            grid = await _grid(page)
            await walk.submit(traffic, editor, req.prompt)
            sub = await self._submitted(walk, traffic, req, grid)
            step = "wait"
            if sub is not None:
                log.info("flow.submitted", workflow=sub.workflow, rpc=sub.rpc,
                         samples=len(sub.media), model=model, settings=chosen,
                         fallbacks=walk.fallback_used or None)
                found = await self._follow(walk, traffic, sub, grid, progress)
            else:
                found = await self._follow_tiles(walk, grid, req.count, progress)
            step = "download"
            videos = await self._download_all(page, sub.workflow if sub else "", found,
                                              downloads)
            await progress(100)
            return videos
        except (FlowFailure, LoginRequired):
            raise
        except PlaywrightTimeout as exc:
            left = classify_url(page.url)
            if left is not None:
                raise login_failure(left, step) from exc
            raise FlowFailure("selector_drift", f"step {step!r} timed out: "
                              f"{str(exc).splitlines()[0][:200]}", step) from exc
        except PlaywrightError as exc:
            raise FlowFailure("generation_failed", f"browser error at step {step!r}: "
                              f"{str(exc).splitlines()[0][:200]}", step) from exc
        finally:
            traffic.close()

    async def canary(self, page: Page, req: ClipRequest) -> CanaryReport:
        """Walk login, blockers, composer, model menu, settings radios and the frame chip, and
        find the submit button without ever clicking it: nothing is spent."""
        req.check()
        walk = _Walk(page, self.step_timeout)
        step = "login"
        try:
            state = await walk.open_project(self.home_url)
            if state is not LoginState.SIGNED_IN:
                return CanaryReport(False, step, walk.fallback_used, dict(walk.matched),
                                    f"login state: {state}")
            step = "blockers"
            await walk.clear_blockers()
            step = "composer"
            await walk.find("editor", sel.EDITOR)
            if req.model_label:
                step = "model"
                await walk.choose_model(req.model_label)
            step = "settings"
            await walk.set_radios(req)
            await walk.close_overlays()
            step = "frame_chip"
            await walk.click("frame_chip", sel.FRAME_CHIP_EMPTY)
            await walk.find("asset_picker", sel.ASSET_PICKER)
            await walk.close_overlays()
            step = "submit"
            broke = await walk.credits_warning()
            if not broke:
                # typing enables submit only where the editor registers real input
                await walk.enter_prompt(req.prompt)
                await walk.submit_button()
                await walk.click("editor", sel.EDITOR)
                await page.keyboard.press("ControlOrMeta+a")
                await page.keyboard.press("Delete")
            return CanaryReport(True, None, walk.fallback_used, dict(walk.matched),
                                insufficient_credits=broke)
        except FlowFailure as exc:
            return CanaryReport(exc.kind == "insufficient_credits", exc.step,
                                walk.fallback_used, dict(walk.matched),
                                f"{exc.kind}: {exc.message}",
                                insufficient_credits=exc.kind == "insufficient_credits")
        except LoginRequired as exc:
            return CanaryReport(False, step, walk.fallback_used, dict(walk.matched), exc.message)
        except PlaywrightError as exc:
            return CanaryReport(False, step, walk.fallback_used, dict(walk.matched),
                                f"browser error: {str(exc).splitlines()[0][:200]}")

    async def _submitted(self, walk: _Walk, traffic: _Traffic, req: ClipRequest,
                         grid: _Grid) -> _Submission | None:
        """The answer to this page's submit: its workflow id and media, or the refusal. None
        when no answer the driver can read came but the grid shows the generation starting (a
        rendering whose RPCs look different): the caller then follows the tiles."""
        deadline = time.monotonic() + self.step_timeout
        moved: float | None = None
        while True:
            reply = await traffic.next(POLL * 3)
            if reply is not None and reply.rpc in sel.SUBMIT_RPCS and (
                    reply.args is None or req.prompt in _strings(reply.args)):
                if reply.payload is None:
                    if reply.error == ["http", 401]:
                        raise LoginRequired("Flow answered the submit as signed out")
                    kind, message = classify_error(reply.error, at_submit=True)
                    raise FlowFailure(kind, f"Flow refused the submit: {message}", "submit")
                ids = _submission_ids(reply.payload)
                if ids is not None and len(ids[1]) == req.count:
                    return _Submission(ids[0], ids[1], reply.rpc)
                log.warning("flow.submit_unread", rpc=reply.rpc,
                            answer=json.dumps(reply.payload)[:200])
                return None
            await walk.guard("submit")
            # the page adds its tiles once it has read its answer, so new tiles with no
            # answer read here (after a moment's grace) mean RPCs this driver does not know
            now = await _grid(walk.page)
            if now.tiles > grid.tiles:
                moved = moved or time.monotonic()
                if time.monotonic() - moved > 1.0:
                    if now.errors > grid.errors:
                        await self._dom_failure(walk, "submit")
                    log.warning("flow.submit_unread", rpc=None)
                    return None
            if time.monotonic() > deadline:
                raise FlowFailure("timeout", "the page sent the submit but no answer came",
                                  "submit")

    async def _follow(self, walk: _Walk, traffic: _Traffic, sub: _Submission, grid: _Grid,
                      progress: Progress) -> list[tuple[str, str, str | None]]:
        """Follow this submission's records through the page's polls to the signed URLs:
        (media id, video URL, poster URL) in record order."""
        deadline = time.monotonic() + self.timeout
        percent = dict.fromkeys(sub.media, 0)
        urls: dict[str, tuple[str, str | None]] = {}
        last = -1
        looks = 0
        error_seen: float | None = None
        tiles_seen: float | None = None
        while True:
            reply = await traffic.next(0.25)
            if reply is not None and reply.payload is not None:
                records = _records(reply.payload, sub.media)
                if reply.rpc == sel.STATUS_RPC:
                    for mid, rec in records.items():
                        if any(sel.REASON.search(s) for s in _strings(rec)):
                            await self._failed(walk, rec)
                        status = next((v for v in _walk(rec) if isinstance(v, int)
                                       and not isinstance(v, bool)), None)
                        if status == sel.RECORD_DONE:
                            percent[mid] = 100
                        else:
                            # unknown statuses count as pending: a failure names its reason
                            numbers = [v for v in _walk(rec) if isinstance(v, int)]
                            if len(numbers) > 1 and 0 <= numbers[1] <= 100:
                                percent[mid] = max(percent[mid], min(numbers[1], 99))
                elif reply.rpc == sel.URL_RPC:
                    for mid, rec in records.items():
                        found = [u for u in _strings(rec) if u.startswith(("http", "/"))]
                        video = next((u for u in found if "/video/" in u),
                                     found[0] if found else None)
                        if video:
                            poster = next((u for u in found if u != video), None)
                            urls[mid] = (urljoin(walk.page.url, video),
                                         urljoin(walk.page.url, poster) if poster else None)
            if len(urls) == len(sub.media):
                await self._cross_check(walk.page, urls)
                return [(mid, *urls[mid]) for mid in sub.media]
            overall = min(99, sum(percent.values()) // len(percent))
            if overall != last:
                last = overall
                await progress(overall)
            await walk.guard("wait")
            looks += 1
            if looks % 4 == 0 and await walk.page.locator(sel.TILE_ERROR).count() > grid.errors:
                # a new error tile: its RPC answer says why in any language, so it gets a
                # moment to arrive before the tile's own text is read
                error_seen = error_seen or time.monotonic()
                if time.monotonic() - error_seen > 1.0:
                    await self._dom_failure(walk, "wait")
            if looks % 4 == 0:
                fresh = await _fresh_tiles(walk.page, grid)
                if len(fresh) >= len(sub.media):
                    # the page shows the videos but no URL answer was readable: after a grace
                    # the tiles stand in, matched to the records by media id where they can be
                    tiles_seen = tiles_seen or time.monotonic()
                    if time.monotonic() - tiles_seen > TILE_GRACE:
                        log.warning("flow.urls_from_tiles", workflow=sub.workflow)
                        return _match_tiles(walk.page.url, sub.media, fresh)
            if time.monotonic() > deadline:
                raise FlowFailure("timeout", f"the generation did not finish within "
                                  f"{self.timeout:.0f} s", "wait")

    async def _follow_tiles(self, walk: _Walk, grid: _Grid, count: int,
                            progress: Progress) -> list[tuple[str, str, str | None]]:
        """Without readable RPC answers: the video tiles that were not on the page before the
        submit, newest first as the grid lists them."""
        page = walk.page
        deadline = time.monotonic() + self.timeout
        last = -1
        while True:
            fresh = await _fresh_tiles(page, grid)
            if len(fresh) >= count:
                return [("", urljoin(page.url, src), urljoin(page.url, poster) if poster else None)
                        for src, poster in fresh[:count]]
            if await page.locator(sel.TILE_ERROR).count() > grid.errors:
                await self._dom_failure(walk, "wait")
            texts = await page.locator(f"{sel.TILE_PENDING} {sel.TILE_PERCENT}").all_inner_texts()
            pcts = [int(m.group(1)) for t in texts[:count] if (m := _PERCENT.search(t))]
            overall = min(99, (sum(pcts) + 100 * len(fresh)) // count)
            if overall != last:
                last = overall
                await progress(overall)
            await walk.guard("wait")
            if time.monotonic() > deadline:
                raise FlowFailure("timeout", f"the generation did not finish within "
                                  f"{self.timeout:.0f} s", "wait")
            await asyncio.sleep(0.25)

    async def _failed(self, walk: _Walk, record: Any) -> None:
        kind, message = classify_error(record, at_submit=False)
        # the newest error tile says it in the page's words
        with contextlib.suppress(PlaywrightError):
            await asyncio.sleep(0.2)
            tile = walk.page.locator(sel.TILE_ERROR).first
            if await tile.count():
                message = f"{message}: {_norm(await tile.inner_text(timeout=1000))}"[:400]
        raise FlowFailure(kind, message, "wait")

    async def _dom_failure(self, walk: _Walk, step: str) -> None:
        """A new error tile the network did not explain: classify its text (English builds)."""
        text = ""
        with contextlib.suppress(PlaywrightError):
            text = _norm(await walk.page.locator(sel.TILE_ERROR).first.inner_text(timeout=1000))
        low = text.lower()
        kind = next((k for t, k in sel.FAILURE_TEXTS if t.lower() in low), "generation_failed")
        raise FlowFailure(kind, f"the page shows an error tile: {text[:300]}", step)

    async def _cross_check(self, page: Page, urls: dict[str, tuple[str, str | None]]) -> None:
        """The tiles should show the videos the records named; a mismatch is logged only, since
        the records are what the page itself acts on."""
        missing: list[str] = []
        for _ in range(10):
            missing = []
            for mid in urls:
                with contextlib.suppress(PlaywrightError):
                    if not await page.locator(f"{sel.TILE_VIDEO}[src*='{mid}']").count():
                        missing.append(mid)
            if not missing:
                return
            await asyncio.sleep(0.2)
        log.warning("flow.tile_mismatch", missing=len(missing), expected=len(urls))

    async def _download_all(self, page: Page, workflow: str,
                            found: list[tuple[str, str, str | None]],
                            folder: Path) -> list[FlowVideo]:
        """Fetch (media id, video URL, poster URL) in order; the videos must be MP4s."""
        videos = []
        stem = workflow or f"flow-{secrets.token_hex(4)}"
        for variant, (mid, video_url, poster_url) in enumerate(found):
            if video_url.startswith("blob:"):
                raise FlowFailure("generation_failed", "the tile holds a blob: URL, which only "
                                  "the page itself can read", "download")
            body = await self._fetch(page, video_url, "video")
            if body[4:8] != b"ftyp":
                raise FlowFailure("generation_failed", "the video URL answered something that "
                                  f"is not an MP4 (it starts {body[:12]!r})", "download")
            path = folder / f"{stem}-{variant}.mp4"
            await asyncio.to_thread(path.write_bytes, body)
            poster = None
            if poster_url:
                try:
                    image = await self._fetch(page, poster_url, "poster")
                except FlowFailure as exc:
                    log.warning("flow.poster_failed", error=exc.message)
                    image = b""
                if image[:3] == b"\xff\xd8\xff":
                    poster = folder / f"{stem}-{variant}.jpg"
                    await asyncio.to_thread(poster.write_bytes, image)
            videos.append(FlowVideo(path, poster, workflow, mid))
        return videos

    async def _fetch(self, page: Page, url: str, what: str) -> bytes:
        # the context's request API sends the account's cookies, which the content host needs
        resp = await page.context.request.get(url, timeout=self.timeout * 1000)
        try:
            if resp.status != 200:
                raise FlowFailure("generation_failed", f"the {what} URL answered HTTP "
                                  f"{resp.status}", "download")
            return await resp.body()
        finally:
            await resp.dispose()
