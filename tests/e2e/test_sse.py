"""Server-Sent Events (issue defect 9): one Redis subscription per web process, fanned out in
memory to every open stream; a per-user cap on open streams (429 beyond it), whose slots come
back when streams close, however they close.

On the old design (19630cb) these fail: every stream opened its own Redis subscription to a
channel per job (``PUBSUB NUMSUB`` grew with the streams) and nothing capped a user's streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.harness import Harness, add_key, api_env, make_user, new_key, running
from veo import names
from veo.sandbox.gemini import FakeGemini

CAP = 3


@contextlib.asynccontextmanager
async def capped(pg_dsn: str, redis_url: str, tmp_path: Path,
                 fake: FakeGemini) -> AsyncIterator[Harness]:
    env = api_env(pg_dsn, redis_url, tmp_path / "store", fake.url,
                  VEO_SSE_STREAMS_PER_USER=str(CAP))
    async with running(env) as h:
        yield h


async def user_with_key(h: Harness, name: str) -> str:
    _, token = await make_user(h, name)
    await add_key(h, token, new_key(name[:6]))
    return token


async def submit(h: Harness, token: str, prompt: str) -> str:
    resp = await h.http.post("/api/jobs", json={"prompt": prompt}, headers=h.auth(token))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


class Stream:
    """One open event stream: its status, and its ``event: job`` payloads as they come."""

    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp
        self.status_code = resp.status_code
        self._lines = resp.aiter_lines() if resp.status_code == 200 else None

    def json(self) -> Any:
        return json.loads(self.body)

    body = b""

    async def events(self, seconds: float = 30) -> AsyncIterator[dict[str, Any]]:
        assert self._lines is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        kind = None
        while True:
            try:
                line = await asyncio.wait_for(anext(self._lines),
                                              max(0.01, deadline - loop.time()))
            except StopAsyncIteration:
                return
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind == "job":
                yield json.loads(line.split(":", 1)[1])

    async def first(self) -> dict[str, Any]:
        async for event in self.events(10):
            return event
        raise AssertionError("the stream ended without an event")

    async def rest(self, seconds: float = 30) -> list[dict[str, Any]]:
        return [e async for e in self.events(seconds)]


@contextlib.asynccontextmanager
async def stream(h: Harness, token: str, job_id: str) -> AsyncIterator[Stream]:
    async with h.http.stream("GET", f"/api/jobs/{job_id}/events",
                             headers=h.auth(token)) as resp:
        s = Stream(resp)
        if resp.status_code != 200:
            s.body = await resp.aread()
        yield s


async def subscribers(h: Harness) -> tuple[int, list[bytes]]:
    counts = await h.svc.redis.pubsub_numsub(names.EVENTS_CHANNEL)
    channels = await h.svc.redis.pubsub_channels()
    return int(counts[0][1]), sorted(channels)


async def test_one_subscription_fans_out_to_every_stream(harness: Harness) -> None:
    h = harness
    tokens = [await user_with_key(h, f"viewer{i}") for i in range(3)]
    jobs = [await submit(h, t, f"watched {i}") for i, t in enumerate(tokens)]
    async with contextlib.AsyncExitStack() as stack:
        streams = []
        for i in range(6):  # two streams per job, three users, no worker: the jobs wait
            resp = await stack.enter_async_context(stream(h, tokens[i % 3], jobs[i % 3]))
            assert resp.status_code == 200
            assert (await resp.first())["status"] == "queued"
            streams.append(resp)
        assert await subscribers(h) == (1, [names.EVENTS_CHANNEL.encode()])
        # one change, published once, reaches both streams of that job
        canceled = await h.http.post(f"/api/jobs/{jobs[0]}/cancel", headers=h.auth(tokens[0]))
        assert canceled.status_code == 200
        for watcher in (streams[0], streams[3]):
            assert [e["status"] for e in await watcher.rest(10)] == ["canceled"]  # it ends
    assert await subscribers(h) == (1, [names.EVENTS_CHANNEL.encode()])


async def test_a_stream_follows_its_job_to_the_end(harness: Harness,
                                                   fake_gemini: FakeGemini) -> None:
    h = harness
    token = await user_with_key(h, "follower")
    fake_gemini.delay = 1.5
    await h.start_worker()
    job_id = await submit(h, token, "follow me")
    async with stream(h, token, job_id) as resp:
        seen = await resp.rest(30)
    statuses = [e["status"] for e in seen]
    assert statuses[-1] == "succeeded" and "running" in statuses
    progress = [e["progress"] for e in seen]
    assert progress == sorted(progress) and progress[-1] == 100
    assert seen[-1]["outputs"]


async def test_streams_per_user_are_capped(pg_dsn: str, redis_url: str, redis: Any,
                                           tmp_path: Path, fake_gemini: FakeGemini) -> None:
    async with capped(pg_dsn, redis_url, tmp_path, fake_gemini) as h:
        token, other = await user_with_key(h, "greedy"), await user_with_key(h, "modest")
        job_id = await submit(h, token, "popular")
        theirs = await submit(h, other, "theirs")
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(CAP):
                resp = await stack.enter_async_context(stream(h, token, job_id))
                assert resp.status_code == 200
                await resp.first()
            async with stream(h, token, job_id) as over:
                assert over.status_code == 429
                assert over.json()["error"]["code"] == "too_many_streams"
                assert str(CAP) in over.json()["error"]["message"]
            # the cap is per user: someone else is not affected
            async with stream(h, other, theirs) as resp:
                assert resp.status_code == 200
        # every slot came back when the streams closed
        await until_streams_free(h, token, job_id)


async def until_streams_free(h: Harness, token: str, job_id: str, seconds: float = 10) -> None:
    """Open CAP streams at once; retry until the server has released every earlier slot."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        async with contextlib.AsyncExitStack() as stack:
            codes = [(await stack.enter_async_context(stream(h, token, job_id))).status_code
                     for _ in range(CAP)]
        if codes == [200] * CAP:
            return
        if loop.time() > deadline:
            raise AssertionError(f"stream slots were not given back: {codes}")
        await asyncio.sleep(0.2)


async def test_slots_come_back_however_a_stream_ends(pg_dsn: str, redis_url: str, redis: Any,
                                                     tmp_path: Path,
                                                     fake_gemini: FakeGemini) -> None:
    """Clients that hang up at once (before reading anything), or after the first event, and
    streams that end because their job ended: none keeps a slot."""
    async with capped(pg_dsn, redis_url, tmp_path, fake_gemini) as h:
        token = await user_with_key(h, "flaky")
        job_id = await submit(h, token, "watched by flaky clients")
        for _ in range(3 * CAP):
            async with stream(h, token, job_id) as resp:
                assert resp.status_code == 200  # ... and hang up without reading
            await asyncio.sleep(0.02)
        for _ in range(2 * CAP):
            async with stream(h, token, job_id) as resp:
                assert resp.status_code == 200, resp.status_code
                await resp.first()
        await until_streams_free(h, token, job_id)
        ended = await submit(h, token, "ends at once")
        await h.http.post(f"/api/jobs/{ended}/cancel", headers=h.auth(token))
        for _ in range(2 * CAP):
            async with stream(h, token, ended) as resp:
                assert [e["status"] for e in await resp.rest(10)] == ["canceled"]
        await until_streams_free(h, token, job_id)


async def hang_up_after(h: Harness, token: str, job_id: str, seconds: float) -> None:
    """Send the request on a raw connection and close it ``seconds`` later, whatever the server
    has sent by then (a client that gives up early, a proxy that drops it)."""
    host, port = h.base_url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /api/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\n"
                 f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    await asyncio.sleep(seconds)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_clients_that_hang_up_early_give_their_slot_back(
        pg_dsn: str, redis_url: str, redis: Any, tmp_path: Path,
        fake_gemini: FakeGemini) -> None:
    async with capped(pg_dsn, redis_url, tmp_path, fake_gemini) as h:
        token = await user_with_key(h, "impatient")
        job_id = await submit(h, token, "barely watched")
        for delay in (0.0, 0.001, 0.003, 0.01, 0.03, 0.1) * CAP:
            await hang_up_after(h, token, job_id, delay)
        await until_streams_free(h, token, job_id)


async def test_streams_hear_changes_again_after_a_redis_restart(
        pg_dsn: str, tmp_path: Path, fake_gemini: FakeGemini) -> None:
    """The process's one subscription is re-made when Redis comes back: a change published
    after a restart reaches an open stream at once, not at the stream's next keep-alive."""
    from tests.harness import RedisServer

    server = RedisServer()
    server.start()
    try:
        env = api_env(pg_dsn, server.url, tmp_path / "store", fake_gemini.url)
        async with running(env) as h:
            token = await user_with_key(h, "survivor")
            job_id = await submit(h, token, "watched through a restart")
            async with stream(h, token, job_id) as resp:
                assert (await resp.first())["status"] == "queued"
                server.stop()
                server.start()
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while True:
                    with contextlib.suppress(RedisConnectionError):  # this test's own first ask
                        if await subscribers(h) == (1, [names.EVENTS_CHANNEL.encode()]):
                            break
                    assert loop.time() < deadline, "the hub did not subscribe again"
                    await asyncio.sleep(0.1)
                started = loop.time()
                canceled = await h.http.post(f"/api/jobs/{job_id}/cancel",
                                             headers=h.auth(token))
                assert canceled.status_code == 200
                assert [e["status"] for e in await resp.rest(10)] == ["canceled"]
                assert loop.time() - started < 5  # the notice, not the 15 s keep-alive
    finally:
        server.stop()
