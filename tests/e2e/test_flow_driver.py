"""The Flow driver straight against the fake Flow site in real Chromium (no database, no
worker), for every markup variant the fake can render."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
from playwright.async_api import Route

from tests.harness import CHROMIUM, png
from veo.browser.context import BrowserSession
from veo.browser.flow import (
    COOL_DOWN,
    FAILURE_CLASSES,
    RETRYABLE,
    ClipRequest,
    FlowDriver,
    FlowFailure,
    FlowVideo,
    LoginState,
    check_login,
    classify_error,
    parse_batchexecute,
)
from veo.errors import LoginRequired
from veo.sandbox import mp4
from veo.sandbox.flow import COOKIE, SUBMIT_RPCS, VARIANTS, FakeFlow

pytestmark = pytest.mark.browser

VARIANT_NAMES = list(VARIANTS)
# outputs per prompt: text jobs take these, frames jobs the rest, so x1..x4 are all covered
COUNTS = {"plain": 1, "localized": 2, "rebuilt": 3, "late": 4}
TEXT_MODELS = {"plain": "Veo 3.1 - Fast", "localized": "Omni 1.1 Flash",
               "rebuilt": "Veo 3.1 - Lite", "late": "Veo 3.1 - Quality"}
# (model, resolution, duration): Omni alone offers 360p and odd durations
FRAME_SETTINGS = {"plain": ("Omni 1.1 Flash", "360p", 5),
                  "localized": ("Veo 3.1 - Fast", "720p", 4),
                  "rebuilt": ("Omni 1.1 Flash", "720p", 10),
                  "late": ("Veo 3.1 - Lite", "720p", 8)}
STEP_TIMEOUT = 6.0


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeFlow]:
    site = FakeFlow()
    await site.start()
    yield site
    await site.stop()


@pytest.fixture(scope="module")
async def driver(fake: FakeFlow) -> FlowDriver:
    return FlowDriver(fake.home, timeout=30, step_timeout=STEP_TIMEOUT)


@pytest.fixture(scope="module")
async def session(fake: FakeFlow, driver: FlowDriver,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserSession]:
    browser = BrowserSession(executable=CHROMIUM, headless=True, recycle_jobs=1000)
    await browser.load(fake.storage_state())
    # earlier work of the account: finished and failed tiles on every page from here on
    folder = tmp_path_factory.mktemp("seed")
    await generate(browser, driver, ClipRequest("seed video", count=2), folder)
    with pytest.raises(FlowFailure):
        await generate(browser, driver, ClipRequest("seed failure [generic]"), folder)
    yield browser
    await browser.close()


@pytest.fixture(autouse=True)
async def _defaults(fake: FakeFlow, session: BrowserSession) -> AsyncIterator[None]:
    fake.reset()
    yield
    fake.reset()
    if not fake.sessions:  # a test expired the login: give the next test a live one
        await session.load(fake.storage_state())


async def generate(browser: BrowserSession, driver: FlowDriver, req: ClipRequest,
                   folder: Path, seen: list[int] | None = None) -> list[FlowVideo]:
    async def progress(pct: int) -> None:
        if seen is not None:
            seen.append(pct)

    async with browser.page() as page:
        return await driver.generate(page, req, progress, folder)


def identity(video: FlowVideo) -> dict[str, Any]:
    ident = mp4.identify(video.path.read_bytes())
    assert ident is not None
    return ident


def check_outputs(videos: list[FlowVideo], req: ClipRequest, fake: FakeFlow) -> None:
    assert len(videos) == req.count
    idents = [identity(v) for v in videos]
    submit = fake.submits[-1]
    # variant order is the order of the page's records (tiles may come in another order)
    assert [i["sample"] for i in idents] == list(range(req.count))
    assert {i["workflow"] for i in idents} == {videos[0].workflow_id} == {submit["workflow"]}
    assert len({i["generation"] for i in idents}) == req.count
    for ident, video in zip(idents, videos, strict=True):
        assert ident["generation"] == video.media_id
        assert ident["submission"] == len(fake.submits)
        assert ident["prompt"] == req.prompt
        assert ident["prompt_sha256"] == hashlib.sha256(req.prompt.encode()).hexdigest()
        assert ident["model"] == (req.model_label or "Veo 3.1 - Fast")
        assert ident["aspect"] == req.aspect_ratio
        assert ident["resolution"] == req.resolution
        assert ident["duration"] == req.duration_seconds
        assert ident["count"] == req.count
        assert video.poster is not None and video.poster.read_bytes()[:3] == b"\xff\xd8\xff"
    # the settings the page submitted are the ones the radios were read back as
    assert submit["settings"] == {"model": req.model_label or "Veo 3.1 - Fast",
                                  "aspect": req.aspect_ratio, "resolution": req.resolution,
                                  "duration": req.duration_seconds, "count": req.count}


@pytest.mark.parametrize("variant", VARIANT_NAMES)
async def test_text_job(fake: FakeFlow, session: BrowserSession, driver: FlowDriver,
                        variant: str, tmp_path: Path) -> None:
    fake.reset(variant)
    req = ClipRequest(prompt=f"a {variant} lighthouse at dusk {uuid.uuid4().hex[:6]}",
                      aspect_ratio="9:16", resolution="720p", duration_seconds=6,
                      count=COUNTS[variant], model_label=TEXT_MODELS[variant])
    seen: list[int] = []
    older = set(fake.media)
    videos = await generate(session, driver, req, tmp_path, seen)
    check_outputs(videos, req, fake)
    assert fake.submits[-1]["rpc"] == "YhhmEf"
    assert all(identity(v)["mode"] == "text" for v in videos)
    assert not {v.media_id for v in videos} & older  # none of the older tiles was taken
    assert seen == sorted(seen) and seen[-1] == 100


@pytest.mark.parametrize("variant", VARIANT_NAMES)
async def test_frames_job(fake: FakeFlow, session: BrowserSession, driver: FlowDriver,
                          variant: str, tmp_path: Path) -> None:
    fake.reset(variant)
    seed = hashlib.sha256(variant.encode()).digest()
    start, end = png((seed[0], 20, 20)), png((20, 20, seed[1]))
    model, resolution, duration = FRAME_SETTINGS[variant]
    req = ClipRequest(prompt=f"{variant} frames {uuid.uuid4().hex[:6]}", aspect_ratio="16:9",
                      resolution=resolution, duration_seconds=duration,
                      count=5 - COUNTS[variant], model_label=model,
                      first_frame=(start, "image/png"), last_frame=(end, "image/jpeg"))
    videos = await generate(session, driver, req, tmp_path)
    check_outputs(videos, req, fake)
    assert fake.submits[-1]["rpc"] == "nprQif"
    for video in videos:
        ident = identity(video)
        assert ident["mode"] == "frames"
        assert ident["first_frame_sha256"] == hashlib.sha256(start).hexdigest()
        assert ident["last_frame_sha256"] == hashlib.sha256(end).hexdigest()


async def test_start_frame_only(fake: FakeFlow, session: BrowserSession, driver: FlowDriver,
                                tmp_path: Path) -> None:
    start = png((90, 200, 90))
    req = ClipRequest(prompt="from a start frame", count=1, first_frame=(start, "image/png"))
    (video,) = await generate(session, driver, req, tmp_path)
    ident = identity(video)
    assert fake.submits[-1]["rpc"] == "eb1hJf"
    assert ident["first_frame_sha256"] == hashlib.sha256(start).hexdigest()
    assert ident["last_frame_sha256"] is None


@pytest.mark.parametrize("variant", VARIANT_NAMES)
@pytest.mark.parametrize(("marker", "kind"), [
    ("[policy]", "policy"),
    ("[ratelimit]", "rate_limited"),
    ("[quota]", "rate_limited"),
    ("[unusual]", "unusual_activity"),
    ("[generic]", "generation_failed"),
])
async def test_failure_classes(fake: FakeFlow, session: BrowserSession, driver: FlowDriver,
                               variant: str, marker: str, kind: str, tmp_path: Path) -> None:
    fake.reset(variant)
    with pytest.raises(FlowFailure) as info:
        await generate(session, driver, ClipRequest(f"trouble {marker}", count=2), tmp_path)
    assert info.value.kind == kind, info.value.message
    assert info.value.step in ("submit", "wait")


def test_failure_table() -> None:
    assert set(FAILURE_CLASSES) == {"policy", "insufficient_credits", "rate_limited",
                                    "unusual_activity", "generation_failed", "selector_drift",
                                    "timeout", "account_unavailable"}
    assert set(COOL_DOWN) == {"rate_limited", "unusual_activity"}
    assert not RETRYABLE["policy"] and not RETRYABLE["selector_drift"]
    assert RETRYABLE["rate_limited"] and RETRYABLE["timeout"]


def test_batchexecute_parsing() -> None:
    body = (")]}'\n\n104\n[[\"wrb.fr\",\"YhhmEf\",null,null,null,[7,\"reCAPTCHA evaluation "
            "failed\",[[\"type.googleapis.com/google.rpc.ErrorInfo\",[\"PUBLIC_ERROR_"
            "SOMETHING_WENT_WRONG\"]]]],\"generic\"],[\"di\",40]]\n25\n[[\"e\",4,null,null,104]]\n")
    (entry,) = parse_batchexecute(body)
    assert entry[1] == "YhhmEf" and entry[2] is None
    # PERMISSION_DENIED at submit is a reCAPTCHA refusal whatever its reason says
    assert classify_error(entry[5], at_submit=True)[0] == "unusual_activity"
    assert classify_error(entry[5], at_submit=False)[0] == "generation_failed"
    assert classify_error([8, "x", [["t", ["PUBLIC_ERROR_USER_QUOTA_REACHED"]]]],
                          at_submit=True)[0] == "rate_limited"


async def test_timeout(fake: FakeFlow, session: BrowserSession, tmp_path: Path) -> None:
    quick = FlowDriver(fake.home, timeout=1.5, step_timeout=STEP_TIMEOUT)
    with pytest.raises(FlowFailure) as info:
        await generate(session, quick, ClipRequest("a long one [slow:30]"), tmp_path)
    assert (info.value.kind, info.value.step) == ("timeout", "wait")


async def test_unknown_markup_is_selector_drift(fake: FakeFlow, session: BrowserSession,
                                                tmp_path: Path) -> None:
    fake.drift = {"radios"}
    strict = FlowDriver(fake.home, timeout=30, step_timeout=2)
    with pytest.raises(FlowFailure) as info:
        await generate(session, strict, ClipRequest("drifted"), tmp_path)
    assert (info.value.kind, info.value.step) == ("selector_drift", "settings_pane")
    assert not fake.submits or fake.submits[-1]["prompt"] != "drifted"


async def test_unreadable_rpcs_fall_back_to_the_tiles(fake: FakeFlow, session: BrowserSession,
                                                      driver: FlowDriver,
                                                      tmp_path: Path) -> None:
    """A build whose RPCs this driver cannot read: the results come from the tiles that were
    not on the page before the submit, and failures from the error tile's text."""
    fake.drift = {"rpc"}
    req = ClipRequest(prompt=f"tiles only {uuid.uuid4().hex[:6]}", count=2)
    videos = await generate(session, driver, req, tmp_path)
    idents = [identity(v) for v in videos]
    assert {i["prompt"] for i in idents} == {req.prompt}
    assert sorted(i["sample"] for i in idents) == [0, 1]
    assert all(v.workflow_id == "" and v.poster is not None for v in videos)
    for marker, kind in (("[policy]", "policy"), ("[ratelimit]", "rate_limited")):
        with pytest.raises(FlowFailure) as info:
            await generate(session, driver, ClipRequest(f"tiles {marker}"), tmp_path)
        assert info.value.kind == kind, info.value.message


async def test_unnamed_assets_and_unread_urls(fake: FakeFlow, session: BrowserSession,
                                             driver: FlowDriver, tmp_path: Path) -> None:
    """A picker without file names gets the newest upload; URL answers of another shape give
    way to the tiles, still in record order since their URLs name the media."""
    fake.drift = {"names", "urls"}
    start = png((240, 200, 10))
    req = ClipRequest(prompt="unnamed", count=2, first_frame=(start, "image/png"))
    videos = await generate(session, driver, req, tmp_path)
    idents = [identity(v) for v in videos]
    assert [i["sample"] for i in idents] == [0, 1]
    assert {i["first_frame_sha256"] for i in idents} == {hashlib.sha256(start).hexdigest()}
    assert all(v.workflow_id == fake.submits[-1]["workflow"] for v in videos)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
async def test_insufficient_credits_is_not_drift(fake: FakeFlow, session: BrowserSession,
                                                 driver: FlowDriver, variant: str,
                                                 tmp_path: Path) -> None:
    fake.reset(variant)
    fake.credits = 0
    started = time.monotonic()
    with pytest.raises(FlowFailure) as info:
        await generate(session, driver, ClipRequest("no money"), tmp_path)
    assert info.value.kind == "insufficient_credits"
    assert time.monotonic() - started < STEP_TIMEOUT  # recognised, not waited out as drift


async def test_credits_run_short_for_the_chosen_model(fake: FakeFlow, session: BrowserSession,
                                                      driver: FlowDriver,
                                                      tmp_path: Path) -> None:
    fake.credits = 50  # enough for Veo 3.1 - Fast x1, not for Quality x1 (100)
    with pytest.raises(FlowFailure) as info:
        await generate(session, driver, ClipRequest("pricey", model_label="Veo 3.1 - Quality"),
                       tmp_path)
    assert info.value.kind == "insufficient_credits"


@pytest.mark.parametrize("variant", VARIANT_NAMES)
async def test_signed_out_hops_to_about(fake: FakeFlow, session: BrowserSession,
                                        driver: FlowDriver, variant: str,
                                        tmp_path: Path) -> None:
    fake.reset(variant)
    fake.expire_all()  # the cookie stays in the browser; the session is dead server-side
    async with session.page() as page:
        response = await page.goto(f"{fake.url}/project/{uuid.uuid4()}")
        # the trap: a 200 document at the project address, and a hop a moment later
        assert response is not None and response.status == 200
        assert "/project/" in page.url
        assert await check_login(page, fake.home) is LoginState.LOGIN_REQUIRED
        assert page.url.endswith("/about")
    with pytest.raises(LoginRequired):
        await generate(session, driver, ClipRequest("signed out"), tmp_path)


@pytest.mark.parametrize("accounts_base", ["", "https://accounts.google.com"])
async def test_accounts_page_means_login(fake: FakeFlow, session: BrowserSession,
                                         accounts_base: str) -> None:
    fake.signed_out_to, fake.accounts_base = "accounts", accounts_base
    fake.expire_all()

    async def accounts(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html",
                            body="<title>Sign in - Google Accounts</title><input type=email>")

    async with session.page() as page:
        await page.route("https://accounts.google.com/**", accounts)
        assert await check_login(page, fake.home) is LoginState.LOGIN_REQUIRED
        assert "/v3/signin/identifier" in page.url
        assert page.url.startswith(accounts_base or fake.url)


async def test_unavailable_account(fake: FakeFlow, session: BrowserSession, driver: FlowDriver,
                                   tmp_path: Path) -> None:
    fake.unavailable = True
    async with session.page() as page:
        assert await check_login(page, fake.home) is LoginState.UNAVAILABLE
    with pytest.raises(FlowFailure) as info:
        await generate(session, driver, ClipRequest("no access"), tmp_path)
    assert info.value.kind == "account_unavailable"


@pytest.mark.parametrize("refusal", ["redirect", "403"])
async def test_headless_is_rejected(fake: FakeFlow, session: BrowserSession, driver: FlowDriver,
                                   refusal: str, tmp_path: Path) -> None:
    fake.refuse_headless, fake.refusal = True, refusal
    async with session.page() as page:
        assert await check_login(page, fake.home) is LoginState.REJECTED
    with pytest.raises(FlowFailure) as info:
        await generate(session, driver, ClipRequest("from a headless browser"), tmp_path)
    assert info.value.kind == "account_unavailable" and "headed" in info.value.message


async def test_headed_under_xvfb(fake: FakeFlow, session: BrowserSession, driver: FlowDriver,
                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The production path: headed Chromium on an Xvfb the session starts itself, which the
    fake's headless refusal lets through; the same run headless is refused."""
    fake.reset("late")
    fake.refuse_headless = True
    monkeypatch.delenv("DISPLAY", raising=False)
    headed = BrowserSession(executable=CHROMIUM, headless=False, recycle_jobs=10)
    await headed.load(fake.storage_state())
    try:
        req = ClipRequest(prompt="headed under Xvfb", count=2, model_label="Omni 1.1 Flash",
                          first_frame=(png((1, 2, 3)), "image/png"))
        videos = await generate(headed, driver, req, tmp_path)
        assert headed.display is not None and headed.display.running
        pid = headed.display.pid
        assert [identity(v)["sample"] for v in videos] == [0, 1]
        async with headed.page() as page:
            assert (await driver.canary(page, ClipRequest("headed canary"))).ok
    finally:
        await headed.close()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the session stopped its Xvfb
    with pytest.raises(FlowFailure) as info:
        await generate(session, driver, req, tmp_path)
    assert info.value.kind == "account_unavailable"


@pytest.mark.parametrize("variant", VARIANT_NAMES)
async def test_canary(fake: FakeFlow, session: BrowserSession, driver: FlowDriver,
                      variant: str) -> None:
    fake.reset(variant)
    rpcs, submits, credits = len(fake.rpcs), len(fake.submits), fake.credits
    async with session.page() as page:
        report = await driver.canary(page, ClipRequest("canary", model_label="Veo 3.1 - Lite",
                                                       count=1, duration_seconds=4))
    assert report.ok and report.step is None, report
    # it spent nothing: no submit RPC reached the site
    assert not set(fake.rpcs[rpcs:]) & set(SUBMIT_RPCS)
    assert len(fake.submits) == submits and fake.credits == credits
    assert {"settings_trigger", "editor", "model_trigger", "model_item", "settings_pane",
            "settings_radios", "frame_chip", "asset_picker", "submit"} <= set(report.matched)
    if variant == "plain":
        assert report.fallback_used == [], report.matched
    if variant == "rebuilt":
        # renamed component classes and the model menu on a chip: found by their fallbacks
        assert {"settings_trigger", "submit", "model_trigger"} <= set(report.fallback_used)
        assert report.matched["editor"] == 0


async def test_two_generations_at_once_in_one_context(fake: FakeFlow, session: BrowserSession,
                                                      driver: FlowDriver,
                                                      tmp_path: Path) -> None:
    """FLOW_MAX_CONCURRENT=2: two pages of one context generate at the same time, each with a
    model to pick from the menu in the settings pane. Chromium paints the page whose window is
    not in front at about a frame a second while something on it changes, so Playwright's
    clicks there wait long for their target to hold still; panes and menus that take a second
    to scale in make that happen on every run here (it is intermittent otherwise). A slow click
    is not a covered one: the model step used to take it for one, close the settings pane with
    every other overlay, and wait out its timeout for the model button that had been inside the
    pane (selector_drift at model_trigger)."""
    fake.overlay_animation = 1.0
    contexts = session.contexts
    tag = uuid.uuid4().hex[:6]
    reqs = [ClipRequest(f"twin {i} {tag}", count=i + 1, model_label=model)
            for i, model in enumerate(("Omni 1.1 Flash", "Veo 3.1 - Lite"))]
    spans: list[tuple[float, float]] = []

    async def run(req: ClipRequest, folder: Path) -> list[FlowVideo]:
        folder.mkdir()
        async with session.page() as page:
            started = time.monotonic()
            try:
                return await driver.generate(page, req, _ignore, folder)
            finally:
                spans.append((started, time.monotonic()))

    results = await asyncio.gather(*(run(req, tmp_path / str(i))
                                     for i, req in enumerate(reqs)))
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # the two really overlapped
    assert session.contexts == contexts  # in one context
    for req, videos in zip(reqs, results, strict=True):
        idents = [identity(v) for v in videos]
        # each page got its own submission's videos, with its own settings
        assert [i["prompt"] for i in idents] == [req.prompt] * req.count
        assert {i["model"] for i in idents} == {req.model_label}
        assert [i["sample"] for i in idents] == list(range(req.count))
    assert len({v.workflow_id for videos in results for v in videos}) == 2


async def test_canary_reports_drift_and_credits(fake: FakeFlow, session: BrowserSession) -> None:
    strict = FlowDriver(fake.home, timeout=30, step_timeout=2)
    fake.drift = {"radios"}
    async with session.page() as page:
        report = await strict.canary(page, ClipRequest("canary"))
    assert not report.ok and report.step == "settings_pane"
    assert report.message is not None and "selector_drift" in report.message
    fake.drift = set()
    fake.credits = 0
    async with session.page() as page:
        report = await strict.canary(page, ClipRequest("canary"))
    assert report.ok and report.insufficient_credits


async def test_replayed_token_is_unusual_activity(fake: FakeFlow, session: BrowserSession,
                                                  driver: FlowDriver, tmp_path: Path) -> None:
    await generate(session, driver, ClipRequest("a first, honest submit"), tmp_path)
    spent = fake.submits[-1]["token"]

    async def replay(route: Route) -> None:
        # what a tool that calls the RPC itself does: send a token the page already used
        form = {k: v[0] for k, v in parse_qs(route.request.post_data or "").items()}
        calls = json.loads(form["f.req"])
        args = json.loads(calls[0][0][1])
        args[4] = spent
        calls[0][0][1] = json.dumps(args)
        form["f.req"] = json.dumps(calls)
        await route.continue_(post_data=urlencode(form))

    async with session.page() as page:
        await page.route(lambda url: "rpcids=YhhmEf" in url, replay)
        with pytest.raises(FlowFailure) as info:
            await driver.generate(page, ClipRequest("replayed"), _ignore, tmp_path)
    assert info.value.kind == "unusual_activity"
    assert "PUBLIC_ERROR_UNUSUAL_ACTIVITY" in info.value.message
    assert fake.submits[-1]["token"] == spent
    assert fake.submits[-1]["error"] == "PUBLIC_ERROR_UNUSUAL_ACTIVITY"


async def test_signed_content_url_needs_the_session(fake: FakeFlow, session: BrowserSession,
                                                    driver: FlowDriver, tmp_path: Path) -> None:
    (video,) = await generate(session, driver, ClipRequest("signed"), tmp_path)
    sid = next(iter(fake.sessions))
    url = fake._sign("video", video.media_id)
    assert "Expires=" in url and "Signature=" in url and f"/video/{video.media_id}?" in url
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).status_code == 403  # a signed URL alone is not enough
    async with httpx.AsyncClient(cookies={COOKIE: sid}) as http:
        assert (await http.get(url.split("&Signature")[0])).status_code == 403
        ok = await http.get(url)
    assert ok.status_code == 200 and ok.content[4:8] == b"ftyp"


async def _ignore(_pct: int) -> None:
    return None
