"""API backend end to end: web app, worker, the real google-genai client, the fake Gemini API
speaking today's protocol (Gemini Omni through the Interactions API)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest

from tests.harness import Harness, add_key, fetch_output, new_key, png, upload
from veo import media
from veo.sandbox import mp4
from veo.sandbox.gemini import FakeGemini


def new_aq_key() -> str:
    # the newer "authorization" key shape, built at run time
    return "A" + "Q." + uuid.uuid4().hex + uuid.uuid4().hex[:12]


async def submit(h: Harness, token: str, body: dict[str, object]) -> dict[str, object]:
    resp = await h.http.post("/api/jobs", json=body, headers=h.auth(token))
    assert resp.status_code == 201, resp.text
    job: dict[str, object] = resp.json()
    return job


async def test_text_to_video_on_omni(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("alice")
    key = new_key()
    stored = await add_key(h, token, key)
    assert stored["masked"] == "…" + key[-4:] and stored["status"] == "active"
    assert key not in str(stored)
    await h.start_worker()
    job = await submit(h, token, {"prompt": "a lighthouse at dawn", "duration_seconds": 5})
    assert job["backend"] == "api" and job["model"] == "gemini-omni-1.1-flash"
    done = await h.wait_job(token, str(job["id"]), {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert done["progress"] == 100 and done["clips"][0]["status"] == "succeeded"
    (out,) = done["outputs"]
    assert (out["clip"], out["variant"], out["selected"]) == (0, 0, True)
    data = await fetch_output(h, token, out["url"])
    assert hashlib.sha256(data).hexdigest() == out["sha256"] and len(data) == out["size"]
    ident = mp4.identify(data)
    assert ident is not None and ident["prompt"] == "a lighthouse at dawn"
    assert ident["model"] == "gemini-omni-1.1-flash" and ident["task"] == "text_to_video"
    assert ident["response_format"]["duration"] == "5s"
    # the stored video has the requested length and a JPEG poster beside it
    assert out["duration_seconds"] == pytest.approx(5.0, abs=0.1)
    poster = await fetch_output(h, token, out["poster_url"])
    assert poster[:3] == b"\xff\xd8\xff"
    (create,) = fake_gemini.creates()
    assert create["key"] == key  # decrypted for use, never stored in plaintext
    assert create["body"]["background"] is True
    raw = await h.svc.db.pool.fetchval("SELECT key_enc FROM api_keys WHERE id = $1",
                                       stored["id"])
    assert key not in raw


async def test_frames_references_and_variants(harness: Harness,
                                              fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("bob")
    await add_key(h, token, new_key())
    red, blue, green, grey = (png((255, 0, 0)), png((0, 0, 255)), png((0, 200, 0)),
                              png((90, 90, 90)))
    first, last = await upload(h, token, red), await upload(h, token, blue)
    refs = [await upload(h, token, green), await upload(h, token, grey)]
    await h.start_worker()
    job = await submit(h, token, {
        "number_of_videos": 3, "aspect_ratio": "9:16", "resolution": "1080p",
        "clips": [{"prompt": "clip zero", "first_frame": first["id"]},
                  {"prompt": "clip one", "first_frame": first["id"], "last_frame": last["id"]},
                  {"prompt": "clip two", "reference_images": [r["id"] for r in refs]}]})
    done = await h.wait_job(token, str(job["id"]), {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "succeeded", done
    slots = {(o["clip"], o["variant"]): o for o in done["outputs"]}
    assert sorted(slots) == [(c, v) for c in range(3) for v in range(3)]
    interactions = set()
    sha = {name: hashlib.sha256(b).hexdigest() for name, b in
           (("red", red), ("blue", blue), ("green", green), ("grey", grey))}
    for (clip, _variant), out in slots.items():
        ident = mp4.identify(await fetch_output(h, token, out["url"]))
        assert ident is not None
        assert ident["prompt"] == ("clip zero", "clip one", "clip two")[clip]
        assert ident["aspect_ratio"] == "9:16" and ident["resolution"] == "1080p"
        interactions.add(ident["interaction"])
        images = [(i["role"], i["sha256"]) for i in ident["images"]]
        if clip == 0:
            assert ident["task"] == "image_to_video"
            assert images == [("first_frame", sha["red"])]
        elif clip == 1:  # the frames reached Google byte for byte, in their roles
            assert images == [("first_frame", sha["red"]), ("last_frame", sha["blue"])]
        else:
            assert ident["task"] == "reference_to_video"
            assert [s for _, s in images] == [sha["green"], sha["grey"]]
    # Omni makes one video per request: 3 variants x 3 clips = 9 interactions
    assert len(interactions) == 9 and len(fake_gemini.creates()) == 9


async def test_extension_by_interaction_then_by_upload(harness: Harness,
                                                       fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("ext")
    await add_key(h, token, new_key())
    await h.start_worker()
    base = await h.wait_job(token, str((await submit(h, token, {
        "prompt": "a kite", "duration_seconds": 4}))["id"]), {"succeeded", "failed"})
    assert base["status"] == "succeeded", base
    source = base["outputs"][0]
    src_ident = mp4.identify(await fetch_output(h, token, source["url"]))
    assert src_ident is not None
    ext = await submit(h, token, {"clips": [{"prompt": "the kite climbs",
                                             "extend_from": source["id"]}],
                                  "duration_seconds": 3})
    done = await h.wait_job(token, str(ext["id"]), {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    ident = mp4.identify(await fetch_output(h, token, done["outputs"][0]["url"]))
    assert ident is not None and ident["task"] == "extend"
    # within Google's retention the stored interaction is continued by its id
    assert ident["previous_interaction_id"] == src_ident["interaction"]
    sent = fake_gemini.creates()[-1]["body"]
    assert sent["previous_interaction_id"] == src_ident["interaction"]
    assert "video" not in str(sent["input"])  # no upload: Google still holds the source
    # past retention, the earlier video itself is sent
    await h.svc.db.pool.execute(
        "UPDATE generations SET created_at = now() - interval '3 days' WHERE job_id = $1",
        base["id"])
    ext2 = await submit(h, token, {"clips": [{"prompt": "the kite lands",
                                              "extend_from": source["id"]}],
                                   "duration_seconds": 3})
    done2 = await h.wait_job(token, str(ext2["id"]), {"succeeded", "failed"})
    assert done2["status"] == "succeeded", done2
    ident2 = mp4.identify(await fetch_output(h, token, done2["outputs"][0]["url"]))
    source_bytes = await fetch_output(h, token, source["url"])
    assert ident2 is not None and ident2["previous_interaction_id"] is None
    assert ident2["video_sha256"] == hashlib.sha256(source_bytes).hexdigest()
    # a model that cannot extend refuses the request before anything is queued
    resp = await h.http.post("/api/jobs", headers=h.auth(token), json={
        "clips": [{"prompt": "x", "extend_from": source["id"]}], "model": "veo-3.1-fast",
        "backend": "flow"})
    assert resp.status_code == 422


async def test_retired_model_refused_at_creation_and_failing_at_submit(
        harness: Harness, fake_gemini: FakeGemini, tmp_path: object) -> None:
    h = harness
    _, token = await h.user("retired")
    await add_key(h, token, new_key())
    resp = await h.http.post("/api/jobs", headers=h.auth(token),
                             json={"prompt": "x", "model": "veo-3.1-fast-generate-preview"})
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "model_retired"
    assert err["details"] == {"field": "model", "replacement": "gemini-omni-1.1-flash"}
    assert "gemini-omni-1.1-flash" in err["message"]
    # Google retires a model the catalog still thinks is served: the clip fails at submit,
    # names the replacement, blames no key and spends no retry
    fake_gemini.retired["gemini-omni-1.1-flash"] = "gemini-omni-1.2-flash"
    await h.start_worker()
    job = await submit(h, token, {"prompt": "too late"})
    done = await h.wait_job(token, str(job["id"]), {"succeeded", "failed"})
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"]["code"] == "model_retired" and done["error"]["retryable"] is False
    assert done["error"]["details"]["replacement"] == "gemini-omni-1.2-flash"
    assert done["clips"][0]["error"]["code"] == "model_retired"
    keys = (await h.http.get("/api/keys", headers=h.auth(token))).json()["data"]
    assert [k["status"] for k in keys] == ["active"]


async def test_rate_limited_key_moves_work_to_next(harness: Harness,
                                                   fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("carol")
    busy, spare = new_key("busy"), new_key("spare")
    await add_key(h, token, busy)
    await add_key(h, token, spare)
    fake_gemini.key(busy, quota=0)
    await h.start_worker()
    job = await submit(h, token, {"prompt": "rotate keys"})
    done = await h.wait_job(token, str(job["id"]), {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    keys = {k["masked"]: k for k in (await h.http.get("/api/keys", headers=h.auth(token)))
            .json()["data"]}
    assert fake_gemini.creates(spare)
    if fake_gemini.creates(busy):  # the busy key was tried first: it is cooling now
        assert keys["…" + busy[-4:]]["status"] == "cooling"
        assert keys["…" + busy[-4:]]["cooling_until"] is not None


async def test_invalid_and_blocked_keys_retired_and_never_shown(
        harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("dave")
    good, doomed, blocked = new_key("good"), new_key("doomed"), new_aq_key()
    for k in (doomed, blocked, good):
        await add_key(h, token, k)
    fake_gemini.key(doomed, invalid=True)  # go bad after they were validated
    fake_gemini.key(blocked, blocked=True)  # its 403 quotes the key
    await h.start_worker()
    for i in range(3):
        job = await submit(h, token, {"prompt": f"job {i}"})
        done = await h.wait_job(token, str(job["id"]), {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
    resp = await h.http.get("/api/keys", headers=h.auth(token))
    keys = {k["masked"]: k for k in resp.json()["data"]}
    assert keys["…" + doomed[-4:]]["status"] == "invalid"
    assert keys["…" + blocked[-4:]]["status"] == "invalid"
    assert blocked not in resp.text and doomed not in resp.text and good not in resp.text
    assert "[REDACTED]" in keys["…" + blocked[-4:]]["last_error"]
    assert len(fake_gemini.creates(doomed)) <= 1  # never used again once retired
    assert len(fake_gemini.creates(blocked)) <= 1
    dump = await h.svc.db.pool.fetchval(
        "SELECT string_agg(coalesce(last_error, ''), ' ') FROM api_keys")
    assert blocked not in dump and doomed not in dump


async def test_key_checks_at_submission_time(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("erin")
    bad = new_key("bad")
    fake_gemini.key(bad, invalid=True)
    stored = await add_key(h, token, bad)
    assert stored["status"] == "invalid"
    # a key whose project cannot see the default model is refused, clearly
    blind = new_aq_key()
    fake_gemini.key(blind, models=["gemini-omni-1.2-flash"])
    resp = await h.http.post("/api/keys", json={"key": blind}, headers=h.auth(token))
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "key_cannot_use_model" and blind not in resp.text
    assert not fake_gemini.creates()  # validation spent no generation quota
    # with only an invalid key, api is refused and auto has nowhere to go (Flow is off here)
    resp = await h.http.post("/api/jobs", json={"prompt": "x", "backend": "api"},
                             headers=h.auth(token))
    assert resp.status_code == 422 and resp.json()["error"]["details"]["field"] == "backend"


@pytest.mark.parametrize("harness", [{"VEO_KEY_MAX_WAIT_SECONDS": "0",
                                      "VEO_KEY_WINDOW_SECONDS": "2"}], indirect=True)
async def test_all_keys_spent_pauses_then_resumes(harness: Harness,
                                                  fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("frank")
    key = new_key("solo")
    await add_key(h, token, key)
    fake_gemini.key(key, quota=1, window=2.0)
    await h.start_worker()
    ids = [str((await submit(h, token, {"prompt": f"burst {i}"}))["id"]) for i in range(2)]
    seen_paused = False
    bodies = []
    for _ in range(300):
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


async def test_safety_refusal_fails_clip_without_retry(harness: Harness) -> None:
    h = harness
    _, token = await h.user("gina")
    await add_key(h, token, new_key())
    await h.start_worker()
    job = await submit(h, token, {"prompt": "something [safety]", "number_of_videos": 2})
    done = await h.wait_job(token, str(job["id"]), {"succeeded", "failed"})
    assert done["status"] == "failed"
    assert done["error"]["code"] == "safety_filtered" and done["error"]["retryable"] is False
    assert "safety" in done["error"]["message"]
    assert done["clips"][0]["error"]["code"] == "safety_filtered"
    assert done["clips"][0]["status"] == "failed"
    assert done["attempts"] == 1  # not retried


@pytest.mark.parametrize("harness", [{"VEO_KEY_MAX_WAIT_SECONDS": "0"}], indirect=True)
async def test_users_never_share_keys(harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token_a = await h.user("a")
    _, token_b = await h.user("b")
    key_b = new_key("b")
    await add_key(h, token_b, key_b)
    # A has no key of its own and no operator pool: never B's key
    resp = await h.http.post("/api/jobs", json={"prompt": "mine"}, headers=h.auth(token_a))
    assert resp.status_code == 422  # flow disabled in this harness
    resp = await h.http.post("/api/jobs", json={"prompt": "mine", "backend": "api"},
                             headers=h.auth(token_a))
    assert resp.status_code == 422
    key_a = new_key("a")
    await add_key(h, token_a, key_a)
    fake_gemini.key(key_a, quota=0)  # A's only key is rate limited: still never B's
    await h.start_worker()
    job = await submit(h, token_a, {"prompt": "mine"})
    await h.wait_job(token_a, str(job["id"]), {"paused"}, timeout=40)
    assert fake_gemini.creates(key_b) == []
    assert all(c["key"] == key_a for c in fake_gemini.creates())


async def test_output_range_requests_and_missing_object(harness: Harness) -> None:
    h = harness
    _, token = await h.user("range")
    await add_key(h, token, new_key())
    await h.start_worker()
    job = await submit(h, token, {"prompt": "ranged"})
    done = await h.wait_job(token, str(job["id"]), {"succeeded"})
    url = done["outputs"][0]["url"]
    full = await fetch_output(h, token, url)
    part = await h.http.get(url, headers={**h.auth(token), "Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == full[4:12]
    assert part.headers["content-range"] == f"bytes 4-11/{len(full)}"
    assert (await h.http.get(url)).status_code == 401
    _, other = await h.user("other")
    assert (await h.http.get(url, headers=h.auth(other))).status_code == 404
    # the object vanished from storage: 404 with the error shape, not a 500
    await h.svc.storage.delete(f"outputs/{done['id']}/0-0.mp4")
    gone = await h.http.get(url, headers=h.auth(token))
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


async def test_stored_video_probe_matches_request(harness: Harness) -> None:
    """The fake's videos are real: ffmpeg reads the stored output's length and shape."""
    h = harness
    _, token = await h.user("probe")
    await add_key(h, token, new_key())
    await h.start_worker()
    job = await submit(h, token, {"prompt": "tall", "aspect_ratio": "9:16",
                                  "duration_seconds": 6})
    done = await h.wait_job(token, str(job["id"]), {"succeeded"})
    probe = await media.probe(h.svc.storage.path(  # type: ignore[attr-defined]
        f"outputs/{done['id']}/0-0.mp4"))
    assert probe.duration == pytest.approx(6.0, abs=0.1)
    assert probe.video is not None and probe.video.height > probe.video.width
    assert probe.audio is not None


async def test_job_failing_before_its_clips_closes_them(harness: Harness) -> None:
    """A job that fails for a reason of its own (its only key deleted before it ran) leaves no
    clip open: the clips carry the job's error."""
    h = harness
    _, token = await h.user("keyless-later")
    key = await add_key(h, token, new_key())
    job = await submit(h, token, {"clips": [{"prompt": "a"}, {"prompt": "b"}]})
    await h.http.delete(f"/api/keys/{key['id']}", headers=h.auth(token))
    await h.start_worker()
    done = await h.wait_job(token, str(job["id"]), {"failed"})
    assert done["error"]["code"] == "no_api_key"
    assert [c["status"] for c in done["clips"]] == ["failed", "failed"]
    assert all(c["error"]["code"] == "no_api_key" for c in done["clips"])
