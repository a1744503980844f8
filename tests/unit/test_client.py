"""The client at the transport edge (httpx.MockTransport): pagination, the SSE parser and the
event stream's reconnects, retries with back-off and Retry-After, errors, downloads."""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from veo import wire
from veo.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    ServerSentEvent,
    SSEDecoder,
    Unauthorized,
)
from veo.client._core import parse_retry_after

BASE = "http://veo.test"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def sample(t: Any) -> Any:
    """A value of the wire type ``t`` with every required field filled, so these tests keep
    up with fields the server adds."""
    return _sample(msgspec.inspect.type_info(t))


def _sample(info: msgspec.inspect.Type) -> Any:
    if isinstance(info, msgspec.inspect.StructType):
        return {f.encode_name: _sample(f.type) for f in info.fields if f.required}
    if isinstance(info, msgspec.inspect.UnionType):
        return None if info.includes_none else _sample(info.types[0])
    simple = {msgspec.inspect.StrType: "", msgspec.inspect.IntType: 0,
              msgspec.inspect.FloatType: 0.0, msgspec.inspect.BoolType: False,
              msgspec.inspect.DateTimeType: NOW.isoformat(), msgspec.inspect.ListType: [],
              msgspec.inspect.DictType: {}}
    for kind, value in simple.items():
        if isinstance(info, kind):
            return value
    raise AssertionError(f"no sample for {info}")


def job(job_id: str, status: str = "queued", progress: int = 0, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = sample(wire.JobOut)
    body.update(id=job_id, status=status, progress=progress, **extra)
    return body


def output(**fields: Any) -> wire.OutputOut:
    return msgspec.convert({**sample(wire.OutputOut), **fields}, wire.OutputOut)


def error(status: int, code: str, message: str, details: Any = None,
          headers: dict[str, str] | None = None) -> httpx.Response:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return httpx.Response(status, json={"error": err}, headers=headers)


class Recorder:
    """A mock transport's handler that answers from a script and keeps every request."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def aclient(handler: Callable[[httpx.Request], httpx.Response], **kw: Any
            ) -> tuple[AsyncClient, list[float]]:
    client = AsyncClient(BASE, "tok", transport=httpx.MockTransport(handler), **kw)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    client._sleep = sleep
    return client, slept


def sclient(handler: Callable[[httpx.Request], httpx.Response], **kw: Any
            ) -> tuple[Client, list[float]]:
    client = Client(BASE, "tok", transport=httpx.MockTransport(handler), **kw)
    slept: list[float] = []
    client._sleep = slept.append
    return client, slept


# ---- pagination ------------------------------------------------------------------------------

def paged(total: int) -> Recorder:
    ids = [f"job_{i:02d}" for i in range(total)]

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/jobs"
        limit = int(request.url.params.get("limit", "20"))
        start = int(request.url.params.get("cursor") or 0)
        page = ids[start:start + limit]
        more = start + limit < total
        return httpx.Response(200, json={"data": [job(i) for i in page],
                                         "next_cursor": str(start + limit) if more else None,
                                         "has_more": more})
    return Recorder(handler)


async def test_list_jobs_follows_cursors() -> None:
    rec = paged(7)
    client, _ = aclient(rec)
    async with client:
        got = [j.id async for j in client.list_jobs(page_size=3, status="succeeded")]
    assert got == [f"job_{i:02d}" for i in range(7)]
    assert [r.url.params.get("cursor") for r in rec.requests] == [None, "3", "6"]
    assert all(r.url.params["status"] == "succeeded" for r in rec.requests)
    assert all(r.url.params["limit"] == "3" for r in rec.requests)


async def test_list_jobs_limit_fetches_no_more_pages_than_needed() -> None:
    rec = paged(10)
    client, _ = aclient(rec)
    async with client:
        got = [j.id async for j in client.list_jobs(page_size=4, limit=5)]
    assert got == [f"job_{i:02d}" for i in range(5)]
    assert len(rec.requests) == 2


async def test_list_jobs_empty() -> None:
    rec = paged(0)
    client, _ = aclient(rec)
    async with client:
        assert [j async for j in client.list_jobs()] == []
    assert len(rec.requests) == 1


def test_sync_list_jobs_follows_cursors() -> None:
    rec = paged(5)
    client, _ = sclient(rec)
    with client:
        assert [j.id for j in client.list_jobs(page_size=2)] == [f"job_{i:02d}" for i in range(5)]
    assert len(rec.requests) == 3


# ---- SSE parsing ------------------------------------------------------------------------------

def parse(*chunks: str) -> list[ServerSentEvent]:
    dec = SSEDecoder()
    return [e for c in chunks for e in dec.feed(c)]


def test_sse_comments_are_keepalives_not_events() -> None:
    dec = SSEDecoder()
    events = dec.feed(": keepalive\n\n:another\n\nevent: job\ndata: {}\n\n: keepalive\n\n")
    assert events == [ServerSentEvent("job", "{}", None)]
    assert dec.comments == 3


def test_sse_multiline_data_joined_with_newlines() -> None:
    assert parse("data: first\ndata:second\ndata:  third\ndata\n\n") == [
        ServerSentEvent("message", "first\nsecond\n third\n", None)]


def test_sse_line_endings_and_bom() -> None:
    text = "\ufeffevent: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n"
    assert parse(text) == [ServerSentEvent("a", "1"), ServerSentEvent("b", "2"),
                           ServerSentEvent("message", "3")]


def test_sse_every_split_point_gives_the_same_events() -> None:
    text = ("\ufeff: hi\r\nid: 7\r\nevent: job\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n"
            "retry: 2500\rdata: x\r\r")
    whole = parse(text)
    assert whole == [ServerSentEvent("job", '{"a":\n1}', "7"), ServerSentEvent("message", "x", "7")]
    for i in range(len(text) + 1):
        assert parse(text[:i], text[i:]) == whole, i
    assert parse(*text) == whole  # one character at a time


def test_sse_fields_id_retry_and_unknown() -> None:
    dec = SSEDecoder()
    events = dec.feed("id: 1\nretry: 1500\nretry: soon\nfoo: bar\ndata: a\n\n"
                      "id: bad\0id\ndata: b\n\nid\ndata: c\n\n")
    assert [(e.data, e.id) for e in events] == [("a", "1"), ("b", "1"), ("c", "")]
    assert dec.retry_ms == 1500 and dec.last_event_id == ""


def test_sse_event_without_data_or_final_blank_line_is_dropped() -> None:
    dec = SSEDecoder()
    assert dec.feed("event: job\n\n") == []
    # the event type does not leak into the next event
    assert dec.feed("data: 1\n\n") == [ServerSentEvent("message", "1")]
    assert dec.feed("event: job\ndata: cut off") == []


def sse(*parts: str) -> bytes:
    return "".join(parts).encode()


def job_event(job_id: str, status: str, progress: int = 0) -> str:
    return f"event: job\ndata: {json.dumps(job(job_id, status, progress))}\n\n"


async def test_events_reconnect_after_drop_and_stop_at_terminal() -> None:
    calls = 0

    async def dropped() -> AsyncIterator[bytes]:
        yield sse(": keepalive\n\n", "id: 5\n", job_event("job_1", "queued"))
        yield sse(job_event("job_1", "running", 40), "data: half an ev")
        raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        assert request.url.path == "/api/jobs/job_1/events"
        assert request.headers["accept"] == "text/event-stream"
        headers = {"content-type": "text/event-stream"}
        if calls == 1:
            return httpx.Response(200, headers=headers, content=dropped())
        # a reconnect says where the dropped stream stopped
        assert request.headers.get("last-event-id") == (None if calls == 1 else "5")
        if calls == 2:
            return httpx.Response(503, headers={"retry-after": "3"})
        return httpx.Response(200, headers=headers, content=sse(
            "id: 9\n", job_event("job_1", "running", 80), ": keepalive\n\n",
            job_event("job_1", "succeeded", 100), job_event("job_1", "never-read")))

    client, slept = aclient(handler)
    async with client:
        seen = [(e.type, e.job.status if e.job else None, e.job.progress if e.job else None)
                async for e in client.events("job_1")]
    assert seen == [("job", "queued", 0), ("job", "running", 40), ("job", "running", 80),
                    ("job", "succeeded", 100)]
    assert calls == 3
    assert slept[1] == 3.0  # the 503's Retry-After


async def test_events_deleted_ends_the_stream() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=sse(job_event("job_1", "queued"),
                                          "event: deleted\ndata: {}\n\n"))

    client, _ = aclient(handler)
    async with client:
        assert [e.type async for e in client.events("job_1")] == ["job", "deleted"]


async def test_wait_falls_back_to_polling_when_streams_fail() -> None:
    polls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        if request.url.path.endswith("/events"):
            return error(429, "too_many_streams", "too many open event streams")
        polls += 1
        return httpx.Response(200, json=job("job_1", "succeeded" if polls == 3 else "running",
                                            polls * 30))

    client, _ = aclient(handler, retry=RetryPolicy(max_retries=1))
    updates: list[int] = []
    async with client:
        done = await client.wait("job_1", on_update=lambda j: updates.append(j.progress))
    assert done.status == "succeeded" and polls == 3
    assert updates == [30, 60, 90]


def test_sync_events_and_wait() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=sse(": ka\n\n", job_event("j", "running", 50),
                                          job_event("j", "failed", 50)))

    client, _ = sclient(handler)
    with client:
        assert [e.job.status for e in client.events("j") if e.job] == ["running", "failed"]
        assert client.wait("j").status == "failed"


# ---- retries ----------------------------------------------------------------------------------

async def test_retry_after_seconds_is_honoured() -> None:
    answers = [error(503, "unavailable", "busy", headers={"Retry-After": "7"}),
               error(429, "rate_limited", "slow down", headers={"Retry-After": "2"}),
               httpx.Response(200, json=job("job_1"))]
    rec = Recorder(lambda r: answers.pop(0))
    client, slept = aclient(rec)
    async with client:
        assert (await client.get_job("job_1")).id == "job_1"
    assert slept == [7.0, 2.0]


def test_retry_after_http_date() -> None:
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("5") == 5.0


async def test_backoff_grows_and_gives_up_with_the_api_error() -> None:
    rec = Recorder(lambda r: error(502, "bad_gateway", "upstream down"))
    policy = RetryPolicy(max_retries=3, backoff=1.0, max_backoff=3.0, jitter=False)
    client, slept = aclient(rec, retry=policy)
    async with client:
        with pytest.raises(ServerError) as info:
            await client.get_job("job_1")
    assert slept == [1.0, 2.0, 3.0] and len(rec.requests) == 4
    assert (info.value.status, info.value.code, info.value.message) == (
        502, "bad_gateway", "upstream down")


async def test_jittered_backoff_stays_within_bounds() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=8.0)
    for attempt, top in enumerate([1.0, 2.0, 4.0, 8.0, 8.0]):
        delay = policy.backoff_delay(attempt)
        assert top / 2 <= delay <= top


async def test_long_retry_after_is_not_slept_through() -> None:
    rec = Recorder(lambda r: error(429, "rate_limited", "come back tomorrow",
                                   headers={"Retry-After": "86400"}))
    client, slept = aclient(rec)
    async with client:
        with pytest.raises(RateLimited) as info:
            await client.get_job("job_1")
    assert slept == [] and info.value.retry_after == 86400.0


async def test_connection_errors_are_retried() -> None:
    failures = 2

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal failures
        if failures:
            failures -= 1
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json=job("job_1"))

    client, slept = aclient(handler)
    async with client:
        assert (await client.get_job("job_1")).id == "job_1"
    assert len(slept) == 2


async def test_unreachable_service_raises_connection_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client, slept = aclient(handler, retry=RetryPolicy(max_retries=2))
    async with client:
        with pytest.raises(ConnectionFailed, match=r"veo\.test"):
            await client.get_job("job_1")
    assert len(slept) == 2


async def test_create_job_retries_with_one_idempotency_key() -> None:
    answers: list[Any] = [httpx.ReadTimeout("no answer"), error(500, "internal", "oops"),
                          httpx.Response(201, json=job("job_1"))]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    rec = Recorder(handler)
    client, _ = aclient(rec)
    async with client:
        created = await client.create_job(wire.JobRequest(prompt="a boat"))
    assert created.id == "job_1"
    assert len(rec.requests) == 3
    assert len({r.headers["idempotency-key"] for r in rec.requests}) == 1
    assert json.loads(rec.requests[0].content) == {"prompt": "a boat"}


async def test_each_create_call_gets_its_own_key_unless_given() -> None:
    rec = Recorder(lambda r: httpx.Response(201, json=job("job_1")))
    client, _ = aclient(rec)
    async with client:
        await client.create_job({"prompt": "a"})
        await client.create_job({"prompt": "a"})
        await client.create_job({"prompt": "a"}, idempotency_key="row-1")
    keys = [r.headers["idempotency-key"] for r in rec.requests]
    assert keys[0] != keys[1] and keys[2] == "row-1"


async def test_non_idempotent_posts_are_not_repeated_after_a_server_error() -> None:
    rec = Recorder(lambda r: error(500, "internal", "oops"))
    client, slept = aclient(rec)
    async with client:
        with pytest.raises(ServerError):
            await client.cancel_job("job_1")
    assert len(rec.requests) == 1 and slept == []


async def test_non_idempotent_posts_are_repeated_when_never_sent() -> None:
    answers: list[Any] = [httpx.ConnectError("refused"),
                          error(503, "unavailable", "busy", headers={"Retry-After": "1"}),
                          httpx.Response(200, json=job("job_1", "canceled"))]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    client, slept = aclient(handler)
    async with client:
        assert (await client.cancel_job("job_1")).status == "canceled"
    assert len(slept) == 2 and slept[1] == 1.0


def test_sync_retry_after() -> None:
    answers = [error(503, "unavailable", "busy", headers={"Retry-After": "4"}),
               httpx.Response(200, json=job("job_1"))]
    client, slept = sclient(lambda r: answers.pop(0))
    with client:
        assert client.get_job("job_1").id == "job_1"
    assert slept == [4.0]


# ---- errors -----------------------------------------------------------------------------------

async def test_api_errors_carry_code_message_status_details() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return error(422, "invalid_field", "duration_seconds: supports 4, 6, 8 seconds",
                         {"field": "duration_seconds"})
        if request.url.path == "/api/jobs/nope":
            return error(404, "not_found", "no job 'nope'")
        return error(401, "unauthorized", "invalid token")

    client, _ = aclient(handler)
    async with client:
        with pytest.raises(InvalidRequest) as bad:
            await client.create_job({"prompt": "x", "duration_seconds": 5})
        with pytest.raises(NotFound) as missing:
            await client.get_job("nope")
        with pytest.raises(Unauthorized) as denied:
            await client.list_keys()
    assert bad.value.field == "duration_seconds" and bad.value.status == 422
    assert str(bad.value) == "422 invalid_field: duration_seconds: supports 4, 6, 8 seconds"
    assert (missing.value.code, missing.value.message) == ("not_found", "no job 'nope'")
    assert denied.value.status == 401 and denied.value.field is None


async def test_error_that_is_not_the_api_shape() -> None:
    rec = Recorder(lambda r: httpx.Response(502, text="<html>Bad Gateway</html>"))
    client, _ = aclient(rec, retry=RetryPolicy(max_retries=0))
    async with client:
        with pytest.raises(ServerError) as info:
            await client.get_job("j")
    assert info.value.code == "http_502" and info.value.message == "Bad Gateway"


async def test_ids_cannot_escape_their_path_segment() -> None:
    rec = Recorder(lambda r: httpx.Response(200, json=job("x")))
    client, _ = aclient(rec)
    async with client:
        await client.get_job("../admin/users")
        await client.select_variant("job_1", 2, 1)
    assert rec.requests[0].url.raw_path == b"/api/jobs/..%2Fadmin%2Fusers"
    assert rec.requests[1].url.path == "/api/jobs/job_1/clips/2/select"
    assert json.loads(rec.requests[1].content) == {"variant": 1}


# ---- downloads --------------------------------------------------------------------------------

VIDEO = bytes(range(256)) * 50


async def test_download_follows_redirect_without_leaking_the_token(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "veo.test":
            assert request.headers["authorization"] == "Bearer tok"
            return httpx.Response(302, headers={
                "location": "https://bucket.storage.test/outputs/j/0-0.mp4?X-Amz-Signature=s"})
        assert "authorization" not in request.headers
        return httpx.Response(200, content=VIDEO)

    rec = Recorder(handler)
    client, _ = aclient(rec)
    out = output(id="out_1", size=len(VIDEO), sha256=hashlib.sha256(VIDEO).hexdigest())
    async with client:
        path = await client.download_output("j", out, tmp_path / "a" / "v.mp4")
        assert path.read_bytes() == VIDEO
        # already there with the right checksum: not fetched again
        await client.download_output("j", out, tmp_path / "a" / "v.mp4")
    assert [r.url.host for r in rec.requests] == ["veo.test", "bucket.storage.test"]
    assert not list((tmp_path / "a").glob("*.part"))


async def test_download_resumes_a_partial_file(tmp_path: Path) -> None:
    dest = tmp_path / "v.mp4"
    (tmp_path / "v.mp4.part").write_bytes(VIDEO[:1000])

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == "bytes=1000-"
        return httpx.Response(206, content=VIDEO[1000:], headers={
            "content-range": f"bytes 1000-{len(VIDEO) - 1}/{len(VIDEO)}"})

    client, _ = aclient(handler)
    async with client:
        await client.download("/api/jobs/j/outputs/o", dest,
                              sha256=hashlib.sha256(VIDEO).hexdigest(), size=len(VIDEO))
    assert dest.read_bytes() == VIDEO


async def test_download_retries_a_dropped_transfer_from_where_it_stopped(
        tmp_path: Path) -> None:
    calls: list[str | None] = []

    async def cut() -> AsyncIterator[bytes]:
        yield VIDEO[:5000]
        raise httpx.ReadError("reset")

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("range"))
        if len(calls) == 1:
            return httpx.Response(200, content=cut())
        return httpx.Response(206, content=VIDEO[5000:], headers={
            "content-range": f"bytes 5000-{len(VIDEO) - 1}/{len(VIDEO)}"})

    client, _ = aclient(handler)
    async with client:
        await client.download("/x", tmp_path / "v.mp4", sha256=hashlib.sha256(VIDEO).hexdigest())
    assert calls == [None, "bytes=5000-"]
    assert (tmp_path / "v.mp4").read_bytes() == VIDEO


def test_sync_download_checks_the_checksum(tmp_path: Path) -> None:
    from veo.client import DownloadError

    client, _ = sclient(lambda r: httpx.Response(200, content=b"not the video"))
    with client, pytest.raises(DownloadError):
        client.download("/x", tmp_path / "v.mp4", sha256=hashlib.sha256(VIDEO).hexdigest())
    assert not (tmp_path / "v.mp4").exists() and not (tmp_path / "v.mp4.part").exists()


async def test_upload_sends_multipart(tmp_path: Path) -> None:
    img = tmp_path / "red.png"
    img.write_bytes(b"\x89PNG fake")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"].startswith("multipart/form-data")
        assert b'name="file"; filename="red.png"' in request.content
        assert b"Content-Type: image/png" in request.content
        return httpx.Response(201, json={"id": "upl_1", "content_type": "image/png", "width": 1,
                                         "height": 1, "size": 9, "sha256": "x"})

    client, _ = aclient(handler)
    async with client:
        assert (await client.upload(img)).id == "upl_1"
