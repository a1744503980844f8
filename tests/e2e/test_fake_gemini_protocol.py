"""The fake speaks today's Gemini API (Omni through the Interactions API), driven here by the
real google-genai client, raw and through our adapter ``veo.gemini.Gemini``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import _interactions as ix
from google.genai import errors, types

from tests.harness import new_key, png
from veo.config import Settings
from veo.errors import GenerationFailed, KeyProblem, ModelRetired
from veo.gemini import Blob, Gemini, Interaction, Video, outcome
from veo.sandbox import mp4
from veo.sandbox.gemini import RETIRED, FakeGemini

OMNI = "gemini-omni-1.1-flash"
RED, GREEN, BLUE, GREY = png((200, 30, 30)), png((30, 200, 30)), png((30, 30, 200)), png((90,) * 3)


def aq_key() -> str:
    # the newer key shape, built at run time so nothing in the repository looks like a key
    return "A" + "Q." + uuid.uuid4().hex + uuid.uuid4().hex[:8]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sdk(fake: FakeGemini, key: str) -> genai.Client:
    # held in a variable by every caller: a client nothing references can be collected mid-call
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=fake.url, api_version="v1beta", timeout=30_000))


@pytest.fixture
async def gem(fake_gemini: FakeGemini) -> AsyncIterator[Gemini]:
    g = Gemini(Settings(gemini_base_url=fake_gemini.url, default_model=OMNI))
    yield g
    await g.close()


async def finished(gem: Gemini, key: str, interaction_id: str,
                   timeout: float = 20) -> Interaction:
    deadline = time.monotonic() + timeout
    while True:
        got = await gem.get(key, interaction_id)
        if outcome(got) is not None or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


async def videos_of(gem: Gemini, key: str, interaction_id: str) -> list[bytes]:
    got = await finished(gem, key, interaction_id)
    result = outcome(got)
    assert isinstance(result, tuple), (got, result)
    return [b"".join([c async for c in gem.download(key, v)]) for v in result]


async def seconds(data: bytes, tmp_path: Path) -> float:
    """The real length as ffmpeg reads it."""
    path = tmp_path / f"{uuid.uuid4().hex}.mp4"
    await asyncio.to_thread(path.write_bytes, data)
    proc = await asyncio.create_subprocess_exec(
        mp4.ffmpeg_exe(), "-hide_banner", "-i", str(path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", err.decode()).groups()  # type: ignore[union-attr]
    return int(h) * 3600 + int(m) * 60 + float(s)


def identity(data: bytes) -> dict[str, Any]:
    ident = mp4.identify(data)
    assert ident is not None
    return ident


# ---- the raw SDK: what it sends and what it parses -------------------------------------------

async def test_sdk_background_create_poll_inline(fake_gemini: FakeGemini, tmp_path: Path) -> None:
    fake_gemini.delay = 0.3
    key = new_key()
    c = sdk(fake_gemini, key)
    created = await c.aio.interactions.create(
        model=OMNI, input="a cat on a skateboard",
        response_format={"type": "video", "aspect_ratio": "9:16", "resolution": "720p",
                         "duration": "4s", "delivery": "inline"},
        generation_config={"video_config": {"task": "text_to_video"}},
        background=True, store=True)
    assert created.status == "in_progress" and created.id and created.id.startswith("v1_")
    assert created.output_video is None
    got = await c.aio.interactions.get(created.id)
    while got.status == "in_progress":
        await asyncio.sleep(0.05)
        got = await c.aio.interactions.get(created.id)
    assert got.status == "completed" and got.usage is not None
    assert got.output_video is not None and got.output_video.mime_type == "video/mp4"
    data = base64.b64decode(got.output_video.data or "")
    ident = identity(data)
    assert ident["prompt"] == "a cat on a skateboard" and ident["task"] == "text_to_video"
    assert ident["prompt_sha256"] == sha(b"a cat on a skateboard")
    assert ident["aspect_ratio"] == "9:16" and ident["interaction"] == created.id
    assert ident["project"] == fake_gemini.project_of(key)
    assert abs(await seconds(data, tmp_path) - 4) < 0.2
    # the wire shape google-genai 2.34 sends
    wire = fake_gemini.creates(key)[0]["body"]
    assert wire == {"model": OMNI, "input": "a cat on a skateboard", "background": True,
                    "store": True, "generation_config": {"video_config": {"task": "text_to_video"}},
                    "response_format": {"type": "video", "aspect_ratio": "9:16",
                                        "resolution": "720p", "duration": "4s",
                                        "delivery": "inline"}}
    polls = [r for r in fake_gemini.requests if r["kind"] == "get"]
    assert polls and polls[0]["path"] == f"/v1beta/interactions/{created.id}"


async def test_sdk_blocking_create_uri_delivery_and_delete(fake_gemini: FakeGemini) -> None:
    key = aq_key()
    c = sdk(fake_gemini, key)
    done = await c.aio.interactions.create(
        model=OMNI, input=[{"type": "text", "text": "<FIRST_FRAME> a red start"},
                           {"type": "image", "data": base64.b64encode(RED).decode(),
                            "mime_type": "image/png"}],
        response_format={"type": "video", "duration": "3s", "delivery": "uri"})
    assert done.status == "completed" and done.output_video is not None
    uri = done.output_video.uri or ""
    assert re.fullmatch(r"https://generativelanguage\.googleapis\.com/v1beta/files/[a-z0-9]+"
                        r":download\?alt=media", uri)
    wire = fake_gemini.creates(key)[0]["body"]
    assert wire["input"][0]["type"] == "user_input"  # a block list goes out wrapped
    assert "background" not in wire
    path = uri.removeprefix("https://generativelanguage.googleapis.com")
    async with httpx.AsyncClient(base_url=fake_gemini.url) as http, \
            http.stream("GET", path, headers={"x-goog-api-key": key}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"] == "video/mp4"
        data = b"".join([chunk async for chunk in resp.aiter_bytes()])
    ident = identity(data)
    assert ident["task"] == "image_to_video" and ident["first_frame_sha256"] == sha(RED)
    assert ident["prompt"] == "<FIRST_FRAME> a red start"
    await c.aio.interactions.delete(done.id or "")
    with pytest.raises(ix.NotFoundError) as gone:
        await c.aio.interactions.get(done.id or "")
    assert gone.value.body == {"error": {"code": "not_found",
                                         "message": f"Interaction {done.id} not found."}}


async def test_sdk_request_validation(fake_gemini: FakeGemini) -> None:
    key = new_key()
    c = sdk(fake_gemini, key)

    async def refused(**kw: Any) -> str:
        args: dict[str, Any] = {"model": OMNI, "input": "x", "background": True, **kw}
        with pytest.raises(ix.BadRequestError) as bad:
            await c.aio.interactions.create(**args)
        assert bad.value.status_code == 400
        body: Any = bad.value.body
        assert body["error"]["code"] == "invalid_request"
        return str(body["error"]["message"])

    assert "google.protobuf.Duration" in await refused(
        response_format={"type": "video", "duration": 8})
    assert "between 3s and 10s" in await refused(response_format={"type": "video",
                                                                   "duration": "11s"})
    assert "between 3s and 10s" in await refused(response_format={"type": "video",
                                                                   "duration": "2s"})
    assert "`seed` isn't supported" in await refused(generation_config={"seed": 7})
    assert "`negative_prompt` isn't supported" in await refused(
        extra_body={"negative_prompt": "dogs"})
    assert "Unknown name" in await refused(extra_body={"sampleCount": 2})
    assert "requires store=true" in await refused(store=False)
    four = [{"type": "image", "data": base64.b64encode(p).decode(), "mime_type": "image/png"}
            for p in (RED, GREEN, BLUE, GREY)]
    assert "At most 3 reference images" in await refused(
        input=[{"type": "text", "text": "four refs"}, *four],
        generation_config={"video_config": {"task": "reference_to_video"}})
    assert not fake_gemini.interactions  # nothing refused was created
    # a key of response_format that the SDK does not know never reaches the wire
    ok = await c.aio.interactions.create(
        model=OMNI, input="camel", background=True,
        response_format={"type": "video", "durationSeconds": 4})  # type: ignore[typeddict-unknown-key]
    assert fake_gemini.interactions[ok.id or ""].seconds == 8.0  # the default length
    assert "durationSeconds" not in fake_gemini.creates(key)[-1]["body"]["response_format"]


async def test_sdk_retired_models_and_legacy_paths(fake_gemini: FakeGemini) -> None:
    key = new_key()
    c = sdk(fake_gemini, key)
    for model, replacement in RETIRED.items():
        with pytest.raises(ix.NotFoundError) as gone:
            await c.aio.interactions.create(model=model, input="x", background=True)
        body: Any = gone.value.body
        text = f"This model models/{model} is no longer available."
        if replacement:
            text += f" Please update your code to use models/{replacement} instead."
        assert body == {"error": {"code": "model_not_found", "message": text}}
    # Veo's old path, through the classic SDK call that used it
    with pytest.raises(errors.ClientError) as old:
        await c.aio.models.generate_videos(model="veo-3.1-generate-preview",
                                           source=types.GenerateVideosSource(prompt="x"))
    assert old.value.code == 404 and old.value.status == "NOT_FOUND"
    assert (old.value.message or "").startswith(
        "models/veo-3.1-generate-preview is not found for API version v1beta, or is not "
        "supported for predictLongRunning.")
    with pytest.raises(errors.ClientError) as classic:
        await c.aio.models.generate_content(model=OMNI, contents="hello")
    assert classic.value.code == 400 and "only supports Interactions API" in str(
        classic.value.message)
    # models.get/list: metadata only, no quota spent even with none left
    fake_gemini.key(key, quota=0)
    model = await c.aio.models.get(model=OMNI)
    assert model.name == f"models/{OMNI}"
    listed = [m.name async for m in await c.aio.models.list()]
    assert f"models/{OMNI}" in listed and not any("veo" in (n or "") for n in listed)
    with pytest.raises(errors.ClientError) as retired_get:
        await c.aio.models.get(model="veo-3.0-generate-001")
    assert retired_get.value.code == 404


async def test_sdk_error_bodies_and_control_over_http(fake_gemini: FakeGemini) -> None:
    bad, blocked, busy = new_key("bad"), aq_key(), new_key("busy")
    async with httpx.AsyncClient(base_url=fake_gemini.url) as http:
        resp = await http.post("/_fake/keys", json={bad: {"invalid": True},
                                                    blocked: {"blocked": True},
                                                    busy: {"quota": 1, "window": 60}})
        assert resp.status_code == 200
    bad_c, blocked_c, busy_c = sdk(fake_gemini, bad), sdk(fake_gemini, blocked), \
        sdk(fake_gemini, busy)
    with pytest.raises(ix.AuthenticationError) as unauth:
        await bad_c.aio.interactions.create(model=OMNI, input="x", background=True)
    assert unauth.value.body == {"error": {"code": "authentication", "message": "API key not "
                                           "valid. Please pass a valid API key."}}
    with pytest.raises(errors.ClientError) as classic_bad:  # the classic endpoints' shape
        await bad_c.aio.models.get(model=OMNI)
    assert classic_bad.value.code == 400
    assert classic_bad.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    with pytest.raises(ix.PermissionDeniedError) as denied:
        await blocked_c.aio.interactions.create(model=OMNI, input="x", background=True)
    assert blocked in str(denied.value.body)  # Google quotes the key; the adapter must redact
    await busy_c.aio.interactions.create(model=OMNI, input="x", background=True)
    with pytest.raises(ix.RateLimitError) as limited:
        await busy_c.aio.interactions.create(model=OMNI, input="x", background=True)
    body: Any = limited.value.body
    assert body["error"]["code"] == "rate_limit_exceeded"
    retry = [d for d in body["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry and 50 < float(retry[0]["retryDelay"].rstrip("s")) <= 60
    # the SDK's own retries (default: 429 too) sent it several times; the adapter does not
    assert len(fake_gemini.creates(busy)) > 2
    async with httpx.AsyncClient(base_url=fake_gemini.url) as http:
        seen = (await http.get("/_fake/requests")).json()
    assert {r["kind"] for r in seen} >= {"create", "get_model"}
    assert all("body" not in r for r in seen)


# ---- the adapter -------------------------------------------------------------------------

async def test_adapter_text_and_frames(fake_gemini: FakeGemini, gem: Gemini,
                                       tmp_path: Path) -> None:
    key = new_key()
    text_id = await gem.create(key, model=OMNI, prompt="a lighthouse at dawn",
                               aspect_ratio="16:9", duration_seconds=6, delivery="inline")
    first_id = await gem.create(key, model=OMNI, prompt="from red",
                                first_frame=Blob(RED, "image/png"), aspect_ratio="9:16",
                                duration_seconds=3)
    both_id = await gem.create(key, model=OMNI, prompt="from red to blue",
                               first_frame=Blob(RED, "image/png"),
                               last_frame=Blob(BLUE, "image/png"), duration_seconds=5)
    (text,) = await videos_of(gem, key, text_id)
    ident = identity(text)
    assert ident["prompt"] == "a lighthouse at dawn" and ident["task"] == "text_to_video"
    assert ident["images"] == [] and ident["aspect_ratio"] == "16:9"
    assert ident["response_format"] == {"type": "video", "aspect_ratio": "16:9",
                                        "resolution": "720p", "delivery": "inline",
                                        "duration": "6s"}
    assert abs(await seconds(text, tmp_path) - 6) < 0.2
    (first,) = await videos_of(gem, key, first_id)
    ident = identity(first)
    assert ident["prompt"] == "from red" and ident["task"] == "image_to_video"
    assert ident["images"] == [{"role": "first_frame", "sha256": sha(RED)}]
    assert ident["aspect_ratio"] == "9:16" and abs(await seconds(first, tmp_path) - 3) < 0.2
    (both,) = await videos_of(gem, key, both_id)
    ident = identity(both)
    assert ident["images"] == [{"role": "first_frame", "sha256": sha(RED)},
                               {"role": "last_frame", "sha256": sha(BLUE)}]
    assert ident["first_frame_sha256"] == sha(RED) and ident["last_frame_sha256"] == sha(BLUE)
    wire = fake_gemini.creates(key)[2]["body"]["input"][0]["content"]
    assert [b["type"] for b in wire] == ["text", "text", "image", "text", "image"]
    assert [b.get("text") for b in wire if b["type"] == "text"] == [
        "from red to blue", "<FIRST_FRAME>", "<LAST_FRAME>"]


async def test_adapter_reference_images(fake_gemini: FakeGemini, gem: Gemini) -> None:
    key = aq_key()
    refs = [Blob(RED, "image/png"), Blob(GREEN, "image/png"), Blob(BLUE, "image/png")]
    ids = [await gem.create(key, model=OMNI, prompt=f"{n} refs", references=refs[:n],
                            duration_seconds=3) for n in (1, 2, 3)]
    for n, iid in enumerate(ids, 1):
        (data,) = await videos_of(gem, key, iid)
        ident = identity(data)
        assert ident["task"] == "reference_to_video" and ident["prompt"] == f"{n} refs"
        assert ident["images"] == [{"role": f"reference_{i}", "sha256": sha(r.data)}
                                   for i, r in enumerate(refs[:n], 1)]
    with pytest.raises(GenerationFailed) as four:
        await gem.create(key, model=OMNI, prompt="4 refs",
                         references=[*refs, Blob(GREY, "image/png")])
    assert four.value.code == "invalid_argument" and not four.value.retryable
    assert "At most 3 reference images" in four.value.message


async def test_adapter_extend(fake_gemini: FakeGemini, gem: Gemini, tmp_path: Path) -> None:
    key = new_key()
    base_id = await gem.create(key, model=OMNI, prompt="a walk", duration_seconds=8)
    (base,) = await videos_of(gem, key, base_id)
    longer_id = await gem.create(key, model=OMNI, prompt="keep walking",
                                 previous_interaction_id=base_id, duration_seconds=5)
    (longer,) = await videos_of(gem, key, longer_id)
    ident = identity(longer)
    # the result is the whole video: the source and the part added
    assert ident["task"] == "extend" and ident["previous_interaction_id"] == base_id
    assert ident["video_sha256"] == sha(base) and ident["source_seconds"] == 8
    assert abs(await seconds(longer, tmp_path) - 13) < 0.2
    uploaded_id = await gem.create(key, model=OMNI, prompt="walk on",
                                   video=Blob(base, "video/mp4"), duration_seconds=4)
    (uploaded,) = await videos_of(gem, key, uploaded_id)
    ident = identity(uploaded)
    assert ident["video_sha256"] == sha(base) and ident["previous_interaction_id"] is None
    assert abs(await seconds(uploaded, tmp_path) - 12) < 0.2
    # an uploaded source may be at most 10 s; extensions stop at 40 s in all
    with pytest.raises(GenerationFailed) as too_long_source:
        await gem.create(key, model=OMNI, prompt="x", video=Blob(longer, "video/mp4"))
    assert "at most 10 seconds" in too_long_source.value.message
    chain = longer_id
    for _ in range(2):  # 13 -> 23 -> 33
        chain = await gem.create(key, model=OMNI, prompt="more", previous_interaction_id=chain,
                                 duration_seconds=10)
        await videos_of(gem, key, chain)
    with pytest.raises(GenerationFailed) as past_40:
        await gem.create(key, model=OMNI, prompt="too far", previous_interaction_id=chain,
                         duration_seconds=8)
    assert "at most 40 seconds" in past_40.value.message and not past_40.value.retryable


async def test_adapter_uri_download_and_redirect(fake_gemini: FakeGemini, gem: Gemini) -> None:
    key = new_key()
    iid = await gem.create(key, model=OMNI, prompt="by uri", duration_seconds=3,
                           delivery="uri")
    got = await finished(gem, key, iid)
    (video,) = got.videos
    assert video.data is None and video.uri and video.uri.startswith(
        "https://generativelanguage.googleapis.com/v1beta/files/")
    direct = b"".join([c async for c in gem.download(key, video)])
    assert identity(direct)["interaction"] == iid
    fake_gemini.redirect_downloads = True
    redirected = b"".join([c async for c in gem.download(key, video)])
    assert redirected == direct
    raw = [r for r in fake_gemini.requests if r["kind"] == "raw"]
    assert raw and raw[-1]["key"] == ""  # the key never went to the other origin
    # inline delivery comes back decoded, through the same call
    inline = Video(data=direct)
    assert b"".join([c async for c in gem.download(key, inline)]) == direct


async def test_adapter_rate_limit_reaches_the_pool_at_once(fake_gemini: FakeGemini,
                                                          gem: Gemini) -> None:
    key = new_key()
    fake_gemini.key(key, quota=1, window=30)
    await gem.create(key, model=OMNI, prompt="one")
    start = time.monotonic()
    with pytest.raises(KeyProblem) as limited:
        await gem.create(key, model=OMNI, prompt="two")
    assert time.monotonic() - start < 1.0  # no SDK retry delay
    assert len(fake_gemini.creates(key)) == 2  # and no SDK retry at all
    assert not limited.value.invalid and limited.value.code == "key_rate_limited"
    assert limited.value.retry_after is not None and 28 < limited.value.retry_after <= 30


@pytest.mark.parametrize("make_key", [new_key, aq_key], ids=["AIza", "AQ"])
async def test_adapter_invalid_and_blocked_keys(fake_gemini: FakeGemini, gem: Gemini,
                                                make_key: Any) -> None:
    bad, blocked, good = make_key(), make_key(), make_key()
    fake_gemini.key(bad, invalid=True)
    fake_gemini.key(blocked, blocked=True)
    with pytest.raises(KeyProblem) as invalid:
        await gem.create(bad, model=OMNI, prompt="x")
    assert invalid.value.invalid and "API key not valid" in invalid.value.message
    with pytest.raises(KeyProblem) as suspended:
        await gem.create(blocked, model=OMNI, prompt="x")
    assert suspended.value.invalid and "has been suspended" in suspended.value.message
    assert blocked not in suspended.value.message and blocked not in str(suspended.value)
    check = await gem.validate_key(blocked)  # the classic endpoint's 403 quotes it too
    assert check.verdict == "invalid" and blocked not in (check.message or "")
    assert (await gem.validate_key(bad)).verdict == "invalid"
    assert (await gem.validate_key(good)).verdict == "ok"
    assert not fake_gemini.creates(good)  # validation spends no generation


async def test_adapter_retired_and_unavailable_models(fake_gemini: FakeGemini,
                                                      gem: Gemini) -> None:
    key = new_key()
    with pytest.raises(ModelRetired) as veo31:
        await gem.create(key, model="veo-3.1-fast-generate-preview", prompt="x")
    assert veo31.value.code == "model_retired" and not veo31.value.retryable
    assert veo31.value.model == "veo-3.1-fast-generate-preview"
    assert veo31.value.replacement == "gemini-omni-1.1-flash"
    with pytest.raises(ModelRetired) as veo2:
        await gem.create(key, model="veo-2.0-generate-001", prompt="x")
    assert veo2.value.replacement is None and veo2.value.model == "veo-2.0-generate-001"
    # the table is per instance: a model retired later answers the same way
    fake_gemini.retired["gemini-omni-1.1-flash"] = "gemini-omni-1.2-flash"
    with pytest.raises(ModelRetired) as omni:
        await gem.create(key, model=OMNI, prompt="x")
    assert omni.value.replacement == "gemini-omni-1.2-flash"
    assert (await gem.validate_key(key)).verdict == "model_unavailable"
    del fake_gemini.retired["gemini-omni-1.1-flash"]
    free = new_key("free")
    fake_gemini.key(free, models=["gemini-omni-1.2-flash"])
    assert (await gem.validate_key(free)).verdict == "model_unavailable"
    assert (await gem.validate_key(key)).verdict == "ok"


async def test_adapter_projects(fake_gemini: FakeGemini, gem: Gemini) -> None:
    owner, colleague, stranger = new_key("owner"), aq_key(), new_key("stranger")
    fake_gemini.project("team", owner, colleague)
    iid = await gem.create(owner, model=OMNI, prompt="ours", duration_seconds=3)
    mine = await finished(gem, owner, iid)
    assert mine.status == "completed"
    assert (await gem.get(colleague, iid)).status == "completed"  # same project
    with pytest.raises(GenerationFailed) as foreign:
        await gem.get(stranger, iid)
    assert foreign.value.code == "not_found" and not isinstance(foreign.value, KeyProblem)
    (video,) = mine.videos
    assert b"".join([c async for c in gem.download(colleague, video)])
    with pytest.raises(GenerationFailed) as foreign_file:
        b"".join([c async for c in gem.download(stranger, video)])
    # a 403 about the file, not about the key: the key stays usable
    assert foreign_file.value.code == "output_unavailable"
    assert identity(b"".join([c async for c in gem.download(owner, video)]))["project"] == "team"


async def test_adapter_outcomes(fake_gemini: FakeGemini, gem: Gemini) -> None:
    key = new_key()
    expected = {"[safety]": ("safety_filtered", False), "[fail]": ("generation_failed", True),
                "[fail-arg]": ("generation_failed", False),
                "[budget]": ("budget_exceeded", False), "[incomplete]": ("incomplete", True),
                "[action]": ("requires_action", False)}
    ids = {marker: await gem.create(key, model=OMNI, prompt=f"clip {marker}")
           for marker in expected}
    for marker, (code, retryable) in expected.items():
        got = await finished(gem, key, ids[marker])
        failure = outcome(got)
        assert isinstance(failure, GenerationFailed), (marker, got)
        assert (failure.code, failure.retryable) == (code, retryable), marker
    safety = await gem.get(key, ids["[safety]"])
    assert safety.status == "completed" and not safety.videos and "safety" in safety.text
    assert "safety policies" in str(outcome(safety))
    failed = await gem.get(key, ids["[fail]"])
    assert failed.error is not None and failed.error.rpc_code == 13
    assert failed.error.code == "INTERNAL"
    # from Python: the next create fails whatever its prompt says
    fake_gemini.force("fail-arg")
    forced = outcome(await finished(gem, key, await gem.create(key, model=OMNI, prompt="ok")))
    assert isinstance(forced, GenerationFailed) and not forced.retryable
    # slow, queued, then cancelled
    fake_gemini.queue_seconds = 0.3
    slow = await gem.create(key, model=OMNI, prompt="take your time [slow:30]")
    assert (await gem.get(key, slow)).status == "queued"
    await asyncio.sleep(0.35)
    running = await gem.get(key, slow)
    assert running.status == "in_progress" and outcome(running) is None
    await gem.cancel(key, slow)
    cancelled = await gem.get(key, slow)
    result = outcome(cancelled)
    assert cancelled.status == "cancelled" and isinstance(result, GenerationFailed)
    assert result.code == "interaction_cancelled"
    await gem.cancel(key, slow)  # cancelling again is harmless


async def test_retention_expiry(fake_gemini: FakeGemini, gem: Gemini) -> None:
    key = aq_key()
    fake_gemini.retention_seconds = 1.0
    iid = await gem.create(key, model=OMNI, prompt="short-lived", duration_seconds=3)
    (video,) = (await finished(gem, key, iid)).videos
    await asyncio.sleep(1.1)
    with pytest.raises(GenerationFailed) as gone:
        await gem.get(key, iid)
    assert gone.value.code == "not_found" and not gone.value.retryable
    with pytest.raises(GenerationFailed) as file_gone:
        b"".join([c async for c in gem.download(key, video)])
    assert file_gone.value.code == "output_unavailable"
    with pytest.raises(GenerationFailed):  # nor can it be extended any more
        await gem.create(key, model=OMNI, prompt="more", previous_interaction_id=iid)
