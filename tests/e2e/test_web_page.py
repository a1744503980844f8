"""The web page, end to end in real Chromium against the sandbox: sign in, submit with a frame,
watch progress, play the video, find it in history; an admin uploads a new Flow login and the
paused jobs resume. Screenshots of the main views land in artifacts/screenshots/."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

from tests.harness import CHROMIUM, Harness, add_key, new_key, png
from veo.browser.context import CHROMIUM_ARGS
from veo.sandbox.flow import FakeFlow

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_page_end_to_end(flow_harness: Harness, fake_flow: FakeFlow,
                               tmp_path: Path) -> None:
    h = flow_harness
    _, token = await h.user("webadmin", admin=True)
    await add_key(h, token, new_key("web"))
    frame = tmp_path / "start.png"
    frame.write_bytes(png((20, 160, 90), (64, 36)))
    await h.start_worker(flow=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 390, "height": 900})  # phone width
        await page.goto(h.base_url + "/")
        await shot(page, "01-signin")
        await page.get_by_label("API token").fill("veo_wrong_token_0123456789abcdef")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("Sign-in failed")
        await page.get_by_label("API token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Create a video")).to_be_visible()

        # a clear API error is shown to the person
        await page.get_by_label("Prompt").fill("too long for 4k")
        await page.get_by_label("Duration (s)").select_option("5")
        await page.get_by_role("button", name="Generate").click()
        await expect(page.get_by_role("alert")).to_contain_text("duration_seconds")

        await page.get_by_label("Duration (s)").select_option("8")
        await page.get_by_label("Prompt").fill("a kite over green hills")
        await page.get_by_label("Start frame (optional)").set_input_files(str(frame))
        await page.get_by_label("Variants").select_option("2")
        await page.get_by_role("button", name="Generate").click()
        current = page.locator("#current")
        await expect(current.locator("progress")).to_be_visible()
        await shot(page, "02-progress")
        await expect(current.locator("[data-status=succeeded]")).to_be_visible(timeout=30_000)
        video = current.locator("video").first
        await expect(video).to_have_count(1)
        await page.wait_for_function(
            "() => { const v = document.querySelector('#current video');"
            " return v && v.readyState >= 1 && v.duration > 0; }", timeout=15_000)
        assert await current.locator("video").count() == 2
        await shot(page, "03-result")
        job_id = await current.locator("article").get_attribute("data-job-id")
        body = (await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))).json()
        assert body["clips"][0]["first_frame"] is not None and len(body["outputs"]) == 2

        # history shows it
        await page.get_by_role("button", name="Refresh").click()
        await expect(page.locator(f"#job-list article[data-job-id='{job_id}']")).to_be_visible()
        await shot(page, "04-history")

        # keys are shown masked
        await expect(page.get_by_role("table", name="Your keys")).to_contain_text("…")

        # Flow login expires: a Flow job pauses; the admin uploads a new login; it resumes
        fake_flow.expire_all()
        await page.get_by_label("Prompt").fill("a flow job after expiry")
        await page.get_by_label("Start frame (optional)").set_input_files([])
        await page.get_by_label("Variants").select_option("1")
        await page.get_by_label("Backend").select_option("flow")
        await page.get_by_role("button", name="Generate").click()
        await expect(current.locator("[data-status=paused]")).to_be_visible(timeout=60_000)
        await expect(current).to_contain_text("flow needs auth")
        await page.goto(h.base_url + "/#admin")
        await expect(page.locator("#flow-auth")).to_contain_text("PAUSED", timeout=10_000)
        await shot(page, "05-admin-paused")
        state = tmp_path / "state.json"
        state.write_text(json.dumps(fake_flow.storage_state()))
        await page.get_by_label("New storage state").set_input_files(str(state))
        await page.get_by_role("button", name="Upload login").click()
        await expect(page.locator("#flow-auth")).to_contain_text("new login uploaded")
        flow_job = (await h.http.get("/api/jobs?limit=1", headers=h.auth(token))).json()["data"][0]
        done = await h.wait_job(token, flow_job["id"], {"succeeded", "failed"}, timeout=90)
        assert done["status"] == "succeeded", done
        await expect(page.locator("#flow-auth")).not_to_contain_text("PAUSED", timeout=15_000)
        await shot(page, "06-admin-resumed")
        await browser.close()
