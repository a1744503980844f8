"""The web page, end to end in real Chromium.

The job view runs on the API backend (fake Gemini): sign in; the model list and the duration
choices follow ``GET /api/models``; a 3-clip job with 2 variants and a final shows each clip as
a strip of posters; picking a variant and rebuilding gives a new final, which plays (its video is
fetched only when play is pressed) and downloads; redoing a clip with a new prompt replaces its
posters and rebuilds the final; history shows posters and loads no video. The token never
appears in a URL.

The Flow part (a Flow job pauses when the login expires; an admin uploads a new login from the
page and it resumes) is its own test, since it needs the Flow backend.

Screenshots land in artifacts/screenshots/ at 390 px (a phone) and 1280 px wide.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    Locator,
    Page,
    Request,
    ViewportSize,
    async_playwright,
    expect,
)

from tests.harness import CHROMIUM, Harness, add_key, new_key
from veo.browser.context import CHROMIUM_ARGS
from veo.sandbox.flow import FakeFlow
from veo.sandbox.gemini import FakeGemini

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PHONE = ViewportSize(width=390, height=900)
DESKTOP = ViewportSize(width=1280, height=900)
RETIRED = ("veo-2.0-generate-001", "veo-3.1-generate-preview", "gemini-omni-flash-preview")
BLOB = re.compile(r"^blob:")  # an image or video fetched with the token, shown by object URL


async def shot(target: Page | Locator, name: str, *, full: bool = True) -> None:
    """A screenshot of the page (whole, or the viewport) or of one element."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = str(SHOTS / f"{name}.png")
    if isinstance(target, Locator):
        await target.screenshot(path=path)
    else:
        await target.screenshot(path=path, full_page=full)


async def sign_in(page: Page, base_url: str, token: str) -> None:
    await page.goto(base_url + "/")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Create a video")).to_be_visible()


async def options(select: Locator) -> list[str]:
    return [t.strip() for t in await select.locator("option").all_inner_texts()]


async def job_json(h: Harness, token: str, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))).json()
    return body


async def posters_shown(strip_item: Locator) -> None:
    """The clip's big poster and every variant thumbnail hold a fetched JPEG (a blob: URL)."""
    await strip_item.scroll_into_view_if_needed()
    for img in await strip_item.locator("img").all():
        await expect(img).to_have_attribute("src", BLOB)


async def final_done(view: Locator, not_sha: str | None = None) -> str:
    """Wait for the view's final to be built (and differ from ``not_sha``); its sha256."""
    final = view.locator("section.final")
    sel = "[data-status=succeeded]" + (f":not([data-sha256='{not_sha}'])" if not_sha else "")
    await expect(view.locator(f"section.final{sel}")).to_have_count(1, timeout=30_000)
    sha = await final.get_attribute("data-sha256")
    assert sha
    return sha


# Flow on in the web app (its models and choices are listed), though this test's jobs run on
# the API backend: the person has a key
@pytest.mark.parametrize("harness", [{"FLOW_BACKEND_ENABLED": "true"}], indirect=True)
async def test_job_view(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("webviewer")
    await add_key(h, token, new_key("web"))
    await h.start_worker()
    async with async_playwright() as pw:
        browser: Browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport=PHONE, accept_downloads=True)
        page = await context.new_page()
        requests: list[Request] = []
        page.on("request", lambda r: requests.append(r))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        await page.goto(h.base_url + "/")
        await shot(page, "01-signin")
        await page.get_by_label("API token").fill("veo_wrong_token_0123456789abcdef")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("Sign-in failed")
        await sign_in(page, h.base_url, token)

        # the models come from the catalog: retired ones hidden, the default marked and chosen,
        # and the durations and resolutions follow the chosen model on its backend
        model = page.get_by_label("Model")
        await expect(model).to_have_value("gemini-omni-1.1-flash")
        names = await options(model)
        assert "gemini-omni-1.1-flash (default)" in names and "gemini-omni-1.2-flash" in names
        assert not any(r in n for r in RETIRED for n in names), names
        duration = page.get_by_label("Duration (s)")
        assert await options(duration) == [str(s) for s in range(3, 11)]
        assert "4k" in await options(page.get_by_label("Resolution"))
        await page.get_by_label("Backend").select_option("flow")
        await model.select_option("veo-3.1-fast")
        assert await options(duration) == ["4", "6", "8"]
        assert await options(page.get_by_label("Resolution")) == ["720p"]
        await page.get_by_label("Backend").select_option("auto")
        await model.select_option("gemini-omni-1.1-flash")

        # three clips, two variants each, one final (cut)
        await page.get_by_label("Prompt", exact=True).fill("a red kite rises")
        await page.get_by_role("button", name="Add clip").click()
        await page.get_by_role("button", name="Add clip").click()
        await page.get_by_label("Clip 2 prompt").fill("the kite loops")
        await page.get_by_label("Clip 3 prompt").fill("the kite lands")
        await duration.select_option("3")
        await page.get_by_label("Variants per clip").select_option("2")
        await page.get_by_label("Stitch the clips into one final video").check()
        # an error of the API names its field, and the page puts the person on it
        await page.get_by_label("Trim start of each clip (frames)").fill("500")
        await page.get_by_role("button", name="Generate").click()
        await expect(page.get_by_role("alert")).to_contain_text("final.trim_start_frames")
        await expect(page.get_by_label("Trim start of each clip (frames)")).to_be_focused()
        await page.get_by_label("Trim start of each clip (frames)").fill("0")
        await shot(page, "02-form-390")
        await page.evaluate("window.scrollTo(0, 0)")  # a full-page shot leaves a stale scroll
        fake_gemini.delay = 0.5  # seconds per generation: long enough to watch it run
        await page.get_by_role("button", name="Generate").click()

        view = page.locator("#current article.job")
        await expect(view).to_have_count(1)
        job_id = await view.get_attribute("data-job-id")
        assert job_id
        # live progress: the bar and the clips' states move while the job runs
        await expect(view.locator(".status-line [data-status=running]")).to_be_visible()
        await expect(view.locator("progress")).to_be_visible()
        await expect(view.locator("li.clip[data-status=succeeded]").first).to_be_visible(
            timeout=30_000)
        await view.scroll_into_view_if_needed()
        await shot(page, "02b-progress-390", full=False)
        fake_gemini.delay = 0.0
        # live over SSE: the page sees the job end without a reload
        await expect(view.locator(".status-line [data-status=succeeded]")).to_be_visible(
            timeout=30_000)
        first_sha = await final_done(view)
        # history lists it at once, fed by the same stream
        await expect(page.locator(f"#job-list article[data-job-id='{job_id}'] .status-line "
                                  "[data-status=succeeded]")).to_be_visible()
        clips = view.locator("ol.strip > li.clip")
        await expect(clips).to_have_count(3)
        for i in range(3):
            clip = view.locator(f"li.clip[data-clip='{i}']")
            await expect(clip.get_by_role("radio")).to_have_count(2)
            await expect(clip.get_by_role("radio", name="Variant 1")).to_be_checked()
            await posters_shown(clip)
        await expect(page.locator("video")).to_have_count(0)  # posters only, until play
        await view.locator("ol.strip").evaluate("el => { el.scrollLeft = 0; }")
        await shot(view, "03-job-390")

        # pick the second variant of the second clip; the final says it is stale; rebuild
        second = view.locator("li.clip[data-clip='1']")
        await second.get_by_role("radio", name="Variant 2").check()
        await expect(view.locator("section.final")).to_contain_text("rebuild it")
        body = await job_json(h, token, job_id)
        assert body["clips"][1]["selected"] == 1
        await expect(second.locator(".media")).to_have_attribute(
            "data-output-id", next(o["id"] for o in body["clips"][1]["outputs"]
                                   if o["variant"] == 1))
        await view.get_by_role("button", name="Rebuild final video").click()
        rebuilt_sha = await final_done(view, not_sha=first_sha)
        final = (await job_json(h, token, job_id))["final"]
        assert final["sha256"] == rebuilt_sha

        # the final plays: its video is fetched when play is pressed, and lasts 3 x 3 s
        assert not [r for r in requests if r.url.endswith("/final") and r.method == "GET"]
        await view.get_by_role("button", name="Play final video").click()
        video = view.locator("section.final video")
        await expect(video).to_have_count(1)
        await expect(video).to_have_attribute("src", BLOB)
        await page.wait_for_function(
            "() => { const v = document.querySelector('#current section.final video');"
            " return v && v.readyState >= 1 && Math.abs(v.duration - 9) < 0.3; }",
            timeout=15_000)
        await shot(page, "04-final-playing-390", full=False)
        async with page.expect_download() as download_info:
            await view.get_by_role("button", name="Download final video").click()
        download = await download_info.value
        assert download.suggested_filename == f"{job_id}-final.mp4"
        data = Path(await download.path()).read_bytes()
        assert len(data) == final["size"] and hashlib.sha256(data).hexdigest() == final["sha256"]

        # redo the third clip with a new prompt: its posters are replaced, the final rebuilt
        # (the outputs keep their ids; their content, sha256 and posters are new)
        third = view.locator("li.clip[data-clip='2']")
        old_videos = await third.get_attribute("data-sha256")
        old_poster = await third.locator(".media img.poster").get_attribute("src")
        await third.get_by_role("button", name="Redo clip 3…").click()
        redo_prompt = third.get_by_label("New prompt for clip 3")
        await expect(redo_prompt).to_have_value("the kite lands")
        await redo_prompt.fill("the kite lands in a blue lake")
        await third.get_by_role("button", name="Redo clip 3", exact=True).click()
        await expect(third.locator(".prompt")).to_have_text("the kite lands in a blue lake")
        await expect(third).not_to_have_attribute("data-sha256", old_videos or "",
                                                  timeout=30_000)
        redone_sha = await final_done(view, not_sha=rebuilt_sha)
        body = await job_json(h, token, job_id)
        assert body["final"]["sha256"] == redone_sha and body["status"] == "succeeded"
        new_videos = [o["sha256"] for o in body["clips"][2]["outputs"]]
        assert await third.get_attribute("data-sha256") == " ".join(new_videos)
        assert not set(new_videos) & set((old_videos or "").split())
        await posters_shown(third)
        assert await third.locator(".media img.poster").get_attribute("src") != old_poster
        # (an element shot taller than the viewport would move the strip: shoot the viewport)
        await third.evaluate("el => el.scrollIntoView({block: 'end', inline: 'end'})")
        await shot(page, "05-redo-390", full=False)

        # history: posters, and no video is fetched until play
        await page.get_by_role("button", name="Refresh").click()
        listed = page.locator(f"#job-list article[data-job-id='{job_id}']")
        await expect(listed).to_be_visible()
        await expect(listed.locator("li.clip")).to_have_count(3)
        await posters_shown(listed.locator("li.clip[data-clip='0']"))
        await expect(listed.locator("section.final img")).to_have_attribute("src", BLOB)
        await expect(listed.locator("video")).to_have_count(0)
        await shot(listed, "06-history-390")

        # only the played final was fetched as a video (the download reused it); no output
        # video was fetched; and the token never travelled in a URL
        videos = [r.url for r in requests if "/outputs/" in r.url and
                  not r.url.endswith("/poster")]
        finals = [r.url for r in requests if r.url.endswith("/final") and r.method == "GET"]
        assert videos == [] and len(finals) == 1, (videos, finals)
        assert not [r.url for r in requests if token in r.url]
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        await page.set_viewport_size(DESKTOP)
        await view.scroll_into_view_if_needed()
        await shot(view, "07-job-desktop")
        await shot(page, "08-page-desktop")
        assert errors == []
        await browser.close()


async def test_flow_login_on_the_page(flow_harness: Harness, fake_flow: FakeFlow,
                                      tmp_path: Path) -> None:
    """A Flow job pauses when the login expires; the admin uploads a new login from the page,
    and the job resumes and succeeds."""
    h = flow_harness
    _, token = await h.user("webadmin", admin=True)
    await h.start_worker(flow=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport=PHONE)
        await sign_in(page, h.base_url, token)
        await expect(page.get_by_role("table", name="Your keys")).to_be_visible()

        fake_flow.expire_all()
        await page.get_by_label("Backend").select_option("flow")
        await page.get_by_label("Prompt", exact=True).fill("a flow job after expiry")
        await page.get_by_role("button", name="Generate").click()
        current = page.locator("#current")
        await expect(current.locator(".status-line [data-status=paused]")).to_be_visible(
            timeout=60_000)
        await expect(current).to_contain_text("flow needs auth")
        await shot(page, "09-flow-paused")
        await page.goto(h.base_url + "/#admin")
        await expect(page.locator("#flow-auth")).to_contain_text("PAUSED", timeout=10_000)
        await shot(page, "10-admin-paused")
        state = tmp_path / "state.json"
        state.write_text(json.dumps(fake_flow.storage_state()))
        await page.get_by_label("New storage state").set_input_files(str(state))
        await page.get_by_role("button", name="Upload login").click()
        await expect(page.locator("#flow-auth")).to_contain_text("new login uploaded")
        flow_job = (await h.http.get("/api/jobs?limit=1", headers=h.auth(token))).json()["data"][0]
        done = await h.wait_job(token, flow_job["id"], {"succeeded", "failed"}, timeout=90)
        assert done["status"] == "succeeded", done
        await expect(page.locator("#flow-auth")).not_to_contain_text("PAUSED", timeout=15_000)
        await shot(page, "11-admin-resumed")
        await browser.close()
