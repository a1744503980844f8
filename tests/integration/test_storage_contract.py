"""One contract, two implementations: local directory and S3 (a real moto_server)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from veo.storage import LocalStorage, S3Storage, Storage
from veo.storage import s3 as s3mod


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "local":
        st: Storage = LocalStorage(tmp_path / "store")
    else:
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        st = S3Storage(bucket, endpoint=server, access_key="test", secret_key="test",
                       region="us-east-1")
    yield st
    await st.close()


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def test_put_get_head_delete(storage: Storage) -> None:
    info = await storage.put_bytes("outputs/j1/0-0.mp4", b"hello world", "video/mp4")
    assert info.size == 11 and info.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert await storage.get_bytes("outputs/j1/0-0.mp4") == b"hello world"
    head = await storage.head("outputs/j1/0-0.mp4")
    assert head is not None and head.size == 11 and head.etag
    assert b"".join([c async for c in storage.get_stream("outputs/j1/0-0.mp4", 2, 6)]) == b"llo w"
    assert b"".join([c async for c in storage.get_stream("outputs/j1/0-0.mp4", 6)]) == b"world"
    await storage.delete("outputs/j1/0-0.mp4")
    assert await storage.head("outputs/j1/0-0.mp4") is None
    await storage.delete("outputs/j1/0-0.mp4")  # deleting twice is fine
    await storage.check()


async def test_overwrite_changes_etag_and_list_prefix(storage: Storage) -> None:
    a = await storage.put_bytes("flow/auth/a/storage_state.json", b"one", "application/json")
    b = await storage.put_bytes("flow/auth/a/storage_state.json", b"two!", "application/json")
    assert a.etag != b.etag
    await storage.put_bytes("debug/j/1.png", b"p", "image/png")
    await storage.put_bytes("debug/j/1.html", b"h", "text/html")
    await storage.put_bytes("debug/k/1.png", b"p", "image/png")
    keys = [o.key for o in await storage.list("debug/j/")]
    assert keys == ["debug/j/1.html", "debug/j/1.png"]
    assert await storage.delete_prefix("debug/j/") == 2
    assert [o.key for o in await storage.list("debug/")] == ["debug/k/1.png"]


async def test_large_stream_is_chunked(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    # small parts so the multipart path runs without a huge payload (S3 allows a last part <5MiB,
    # moto enforces the 5 MiB minimum on non-final parts, so use 5 MiB parts)
    monkeypatch.setattr(s3mod, "PART_SIZE", 5 * 1024 * 1024)
    data = os.urandom(11 * 1024 * 1024 + 123)
    info = await storage.put_stream("outputs/big/0-0.mp4", _chunks(data, 1 << 20), "video/mp4")
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    got = hashlib.sha256()
    async for c in storage.get_stream("outputs/big/0-0.mp4"):
        got.update(c)
    assert got.hexdigest() == info.sha256


async def test_failed_stream_leaves_nothing(storage: Storage) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        await storage.put_stream("outputs/x/0-0.mp4", broken(), "video/mp4")
    assert await storage.head("outputs/x/0-0.mp4") is None
    assert await storage.list("outputs/x/") == []


async def test_missing_object(storage: Storage) -> None:
    from veo.storage import ObjectNotFound

    with pytest.raises(ObjectNotFound):
        await storage.get_bytes("nope/nothing")


async def test_presign(storage: Storage) -> None:
    await storage.put_bytes("outputs/p/0-0.mp4", b"video-bytes", "video/mp4")
    url = await storage.presign("outputs/p/0-0.mp4", 60)
    if storage.backend == "local":
        assert url is None
        return
    assert url is not None and "X-Amz-Signature" in url
    async with httpx.AsyncClient() as client:
        resp = await client.get(url)
    assert resp.status_code == 200 and resp.content == b"video-bytes"


@pytest.mark.parametrize("key", ["../etc/passwd", "a/../../b", "/abs", "a//b", "a/./b", "a\\b", ""])
async def test_local_refuses_traversal(tmp_path: Path, key: str) -> None:
    st = LocalStorage(tmp_path / "root")
    with pytest.raises(ValueError):
        await st.put_bytes(key, b"x", "text/plain")
    assert not (tmp_path / "etc").exists()
