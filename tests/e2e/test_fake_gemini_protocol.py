"""The fake speaks the real protocol: driven here by the real google-genai client."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from google import genai
from google.genai import errors, types

from veo.sandbox import mp4
from veo.sandbox.gemini import FakeGemini


def client(fake: FakeGemini, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=fake.url, api_version="v1beta", timeout=10_000))


async def test_generate_poll_download(fake_gemini: FakeGemini) -> None:
    fake_gemini.delay = 0.2
    c = client(fake_gemini, "AIza-test-" + uuid.uuid4().hex)
    op = await c.aio.models.generate_videos(
        model="veo-3.1-fast-generate-preview",
        source=types.GenerateVideosSource(prompt="a cat on a skateboard"),
        config=types.GenerateVideosConfig(number_of_videos=1, duration_seconds=8,
                                          aspect_ratio="9:16", resolution="720p"))
    assert op.name and op.name.startswith("models/veo-3.1-fast-generate-preview/operations/")
    assert not op.done
    while not op.done:
        await asyncio.sleep(0.05)
        op = await c.aio.operations.get(op)
    assert op.error is None and op.response is not None
    (generated,) = op.response.generated_videos or []
    assert generated.video is not None
    data = await c.aio.files.download(file=generated.video)
    ident = mp4.identify(data)
    assert ident is not None and ident["prompt"] == "a cat on a skateboard"
    assert ident["parameters"]["aspectRatio"] == "9:16"
    assert [b[0] for b in mp4.boxes(data)][:2] == ["ftyp", "moov"]
    # resuming from the stored name alone works, as after a restart
    again = await c.aio.operations.get(types.GenerateVideosOperation(name=op.name))
    assert again.done
    create = fake_gemini.creates()[0]
    assert create["body"]["parameters"]["sampleCount"] == 1


async def test_error_bodies(fake_gemini: FakeGemini) -> None:
    fake_gemini.key("bad-key-0000000000", invalid=True)
    fake_gemini.key("blocked-key-00000000", blocked=True)
    fake_gemini.key("busy-key-0000000000", quota=1, window=60)
    cfg = types.GenerateVideosConfig(number_of_videos=1)
    src = types.GenerateVideosSource(prompt="x")
    # clients are held in variables: one nothing references can be collected mid-call
    bad_client = client(fake_gemini, "bad-key-0000000000")
    blocked_client = client(fake_gemini, "blocked-key-00000000")
    ok_client = client(fake_gemini, "ok-key-000000000000")
    with pytest.raises(errors.ClientError) as bad:
        await bad_client.aio.models.generate_videos(
            model="veo-3.1-generate-preview", source=src, config=cfg)
    assert bad.value.code == 400
    assert bad.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    with pytest.raises(errors.ClientError) as blocked:
        await blocked_client.aio.models.generate_videos(
            model="veo-3.1-generate-preview", source=src, config=cfg)
    assert blocked.value.code == 403
    busy = client(fake_gemini, "busy-key-0000000000")
    await busy.aio.models.generate_videos(model="veo-3.1-generate-preview", source=src,
                                          config=cfg)
    with pytest.raises(errors.ClientError) as quota:
        await busy.aio.models.generate_videos(model="veo-3.1-generate-preview", source=src,
                                              config=cfg)
    assert quota.value.code == 429 and quota.value.status == "RESOURCE_EXHAUSTED"
    retry = [d for d in quota.value.details["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry and 59 < float(retry[0]["retryDelay"].rstrip("s")) <= 60
    from veo.gemini import translate

    mapped = translate(quota.value)
    assert mapped.code == "key_rate_limited" and 59 < mapped.retry_after <= 60  # type: ignore[attr-defined]
    with pytest.raises(errors.ClientError) as unsupported:
        await ok_client.aio.models.generate_videos(
            model="veo-2.0-generate-001", source=src,
            config=types.GenerateVideosConfig(resolution="720p"))
    assert "isn't supported by this model" in (unsupported.value.message or "")


async def test_safety_and_operation_error(fake_gemini: FakeGemini) -> None:
    c = client(fake_gemini, "AIza-test-" + uuid.uuid4().hex)
    op = await c.aio.models.generate_videos(
        model="veo-3.1-generate-preview", source=types.GenerateVideosSource(prompt="x [safety]"))
    op = await c.aio.operations.get(op)
    assert op.done and op.response is not None and op.response.generated_videos is None
    assert op.response.rai_media_filtered_count == 1
    op = await c.aio.models.generate_videos(
        model="veo-3.1-generate-preview", source=types.GenerateVideosSource(prompt="x [fail]"))
    op = await c.aio.operations.get(op)
    assert op.done and op.error == {"code": 13, "message": "Internal error while generating "
                                    "the video."}


async def test_download_via_redirect(fake_gemini: FakeGemini) -> None:
    fake_gemini.redirect_downloads = True
    c = client(fake_gemini, "AIza-test-" + uuid.uuid4().hex)
    op = await c.aio.models.generate_videos(
        model="veo-3.1-generate-preview", source=types.GenerateVideosSource(prompt="redirected"))
    op = await c.aio.operations.get(op)
    assert op.response and op.response.generated_videos
    data = await c.aio.files.download(file=op.response.generated_videos[0].video)
    assert mp4.identify(data)["prompt"] == "redirected"  # type: ignore[index]
