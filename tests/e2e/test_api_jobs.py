"""API backend end to end: web app, worker, real google-genai client, fake Gemini API."""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from tests.harness import Harness, add_key, fetch_output, new_key, png, upload
from veo.sandbox import mp4
from veo.sandbox.gemini import FakeGemini


async def test_text_to_video(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("alice")
    key = new_key()
    stored = await add_key(h, token, key)
    assert stored["masked"] == "…" + key[-4:] and stored["status"] == "active"
    assert key not in str(stored)
    await h.start_worker()
    resp = await h.http.post("/api/jobs", json={"prompt": "a lighthouse at dawn"},
                             headers=h.auth(token))
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert job["backend"] == "api" and job["status"] in ("queued", "running")
    done = await h.wait_job(token, job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert done["progress"] == 100 and done["clips"][0]["status"] == "succeeded"
    (out,) = done["outputs"]
    assert (out["clip"], out["variant"]) == (0, 0)
    data = await fetch_output(h, token, out["url"])
    assert hashlib.sha256(data).hexdigest() == out["sha256"] and len(data) == out["size"]
    ident = mp4.identify(data)
    assert ident is not None and ident["prompt"] == "a lighthouse at dawn"
    assert ident["model"] == "veo-3.1-fast-generate-preview"
    assert len(fake_gemini.creates()) == 1
    # the key itself reached the fake: it was decrypted for use, never stored in plaintext
    assert fake_gemini.creates()[0]["key"] == key
    raw = await h.svc.db.pool.fetchval("SELECT key_enc FROM api_keys WHERE id = $1",
                                       stored["id"])
    assert key not in raw


async def test_frames_clips_and_variants(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("bob")
    await add_key(h, token, new_key())
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    first = await upload(h, token, red)
    last = await upload(h, token, blue)
    assert first["sha256"] == hashlib.sha256(red).hexdigest()
    assert (first["width"], first["height"], first["content_type"]) == (32, 18, "image/png")
    await h.start_worker()
    resp = await h.http.post("/api/jobs", headers=h.auth(token), json={
        "model": "veo-3.1-generate-preview", "number_of_videos": 3, "aspect_ratio": "9:16",
        "clips": [{"prompt": "clip zero", "first_frame": first["id"], "last_frame": last["id"]},
                  {"prompt": "clip one"}]})
    assert resp.status_code == 201, resp.text
    done = await h.wait_job(token, resp.json()["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    slots = {(o["clip"], o["variant"]): o for o in done["outputs"]}
    assert sorted(slots) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    operations = set()
    for (clip, _variant), out in slots.items():
        ident = mp4.identify(await fetch_output(h, token, out["url"]))
        assert ident is not None
        assert ident["prompt"] == ("clip zero" if clip == 0 else "clip one")
        assert ident["parameters"]["aspectRatio"] == "9:16"
        operations.add(ident["operation"])
        if clip == 0:
            # the frames reached the API byte for byte
            assert ident["first_frame_sha256"] == hashlib.sha256(red).hexdigest()
            assert ident["last_frame_sha256"] == hashlib.sha256(blue).hexdigest()
        else:
            assert ident["first_frame_sha256"] is None
    # Veo 3.x returns one sample per request: 3 variants x 2 clips = 6 operations
    assert len(operations) == 6 and len(fake_gemini.creates()) == 6


async def test_rate_limited_key_moves_work_to_next(harness: Harness,
                                                   fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("carol")
    busy, spare = new_key("busy"), new_key("spare")
    await add_key(h, token, busy)
    await add_key(h, token, spare)
    fake_gemini.key(busy, quota=0)
    await h.start_worker()
    resp = await h.http.post("/api/jobs", json={"prompt": "rotate keys"}, headers=h.auth(token))
    done = await h.wait_job(token, resp.json()["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    keys = {k["masked"]: k for k in (await h.http.get("/api/keys", headers=h.auth(token)))
            .json()["data"]}
    statuses = {k["status"] for k in keys.values()}
    assert "active" in statuses
    assert {c["key"] for c in fake_gemini.creates() if c["key"] == spare}
    if fake_gemini.creates(busy):  # the busy key was tried first: it is cooling now
        assert keys["…" + busy[-4:]]["status"] == "cooling"
        assert keys["…" + busy[-4:]]["cooling_until"] is not None


async def test_invalid_key_is_retired(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("dave")
    good, doomed = new_key("good"), new_key("doomed")
    await add_key(h, token, doomed)
    await add_key(h, token, good)
    fake_gemini.key(doomed, invalid=True)  # goes bad after it was validated
    await h.start_worker()
    for i in range(2):
        resp = await h.http.post("/api/jobs", json={"prompt": f"job {i}"}, headers=h.auth(token))
        done = await h.wait_job(token, resp.json()["id"], {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
    keys = {k["masked"]: k for k in (await h.http.get("/api/keys", headers=h.auth(token)))
            .json()["data"]}
    assert keys["…" + doomed[-4:]]["status"] == "invalid"
    assert "API key not valid" in keys["…" + doomed[-4:]]["last_error"]
    assert len(fake_gemini.creates(doomed)) <= 1  # never used again once retired


async def test_key_invalid_at_submission_time_stored_invalid(harness: Harness,
                                                            fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("erin")
    bad = new_key("bad")
    fake_gemini.key(bad, invalid=True)
    stored = await add_key(h, token, bad)
    assert stored["status"] == "invalid"
    assert not fake_gemini.creates()  # validation spent no generation quota
    # with only an invalid key, auto routes away from the API
    resp = await h.http.post("/api/jobs", json={"prompt": "x", "backend": "api"},
                             headers=h.auth(token))
    assert resp.status_code == 422 and resp.json()["error"]["details"]["field"] == "backend"


async def test_all_keys_cooling_pauses_then_resumes(harness: Harness,
                                                     fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("frank")
    key = new_key("solo")
    await add_key(h, token, key)
    fake_gemini.key(key, quota=1, window=2.0)
    await h.start_worker()
    ids = []
    for i in range(2):
        resp = await h.http.post("/api/jobs", json={"prompt": f"burst {i}"},
                                 headers=h.auth(token))
        ids.append(resp.json()["id"])
    seen_paused = False
    for _ in range(200):
        bodies = [(await h.http.get(f"/api/jobs/{i}", headers=h.auth(token))).json()
                  for i in ids]
        if any(b["status"] == "paused" and b["paused_reason"] == "api_keys_exhausted"
               for b in bodies):
            seen_paused = True
        if all(b["status"] == "succeeded" for b in bodies):
            break
        await asyncio.sleep(0.05)
    assert seen_paused
    assert all(b["status"] == "succeeded" for b in bodies), bodies
    # a pause spends no try: only the run that made the video counts
    assert all(b["attempts"] == 1 for b in bodies), [b["attempts"] for b in bodies]


async def test_safety_filtered_clip_fails_with_reasons(harness: Harness) -> None:
    h = harness
    _, token = await h.user("gina")
    await add_key(h, token, new_key())
    await h.start_worker()
    resp = await h.http.post("/api/jobs", json={"prompt": "something [safety]"},
                             headers=h.auth(token))
    done = await h.wait_job(token, resp.json()["id"], {"succeeded", "failed"})
    assert done["status"] == "failed"
    assert done["error"]["code"] == "safety_filtered" and done["error"]["retryable"] is False
    assert "safety" in done["error"]["message"]
    assert done["clips"][0]["error"]["details"]["reasons"]
    assert done["attempts"] == 1  # not retried


async def test_users_never_share_keys(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token_a = await h.user("a")
    _, token_b = await h.user("b")
    key_b = new_key("b")
    await add_key(h, token_b, key_b)
    # A has no key of its own and no operator pool: A's job goes to Flow, never to B's key
    resp = await h.http.post("/api/jobs", json={"prompt": "mine"}, headers=h.auth(token_a))
    assert resp.status_code == 422  # flow disabled in this harness
    resp = await h.http.post("/api/jobs", json={"prompt": "mine", "backend": "api"},
                             headers=h.auth(token_a))
    assert resp.status_code == 422
    key_a = new_key("a")
    await add_key(h, token_a, key_a)
    fake_gemini.key(key_a, quota=0)  # A's only key is rate limited: still never B's
    await h.start_worker()
    resp = await h.http.post("/api/jobs", json={"prompt": "mine"}, headers=h.auth(token_a))
    job_id = resp.json()["id"]
    await h.wait_job(token_a, job_id, {"paused"})
    assert fake_gemini.creates(key_b) == []
    assert all(c["key"] == key_a for c in fake_gemini.creates())


async def test_output_range_requests(harness: Harness) -> None:
    h = harness
    _, token = await h.user("range")
    await add_key(h, token, new_key())
    await h.start_worker()
    resp = await h.http.post("/api/jobs", json={"prompt": "ranged"}, headers=h.auth(token))
    done = await h.wait_job(token, resp.json()["id"], {"succeeded"})
    url = done["outputs"][0]["url"]
    full = await fetch_output(h, token, url)
    part = await h.http.get(url, headers={**h.auth(token), "Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == full[4:12]
    assert part.headers["content-range"] == f"bytes 4-11/{len(full)}"
    assert (await h.http.get(url)).status_code == 401
    _, other = await h.user("other")
    assert (await h.http.get(url, headers=h.auth(other))).status_code == 404
    _ = httpx
