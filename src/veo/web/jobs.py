"""Job routes: create, list, get, events (SSE), cancel, retry, delete, the videos and posters,
variant choice, redo of a clip, the final video, and the model catalog."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from veo import jobs as core
from veo import wire
from veo.errors import BadRequest, CryptoError, InvalidRequest, NotFound, VeoError
from veo.events import Hub, TooManyStreams
from veo.records import Job, User
from veo.services import Services
from veo.storage import LocalStorage
from veo.web import render
from veo.web.auth import current_user
from veo.web.uploads import read_bounded

MAX_JOB_BODY = 256 * 1024
MAX_SMALL_BODY = 16 * 1024
PRESIGN_SECONDS = 300  # long enough to start a download, short enough to be useless if leaked
SSE_KEEPALIVE = 15.0  # seconds between pings that keep proxies from closing the stream
MAX_PREFER_WAIT = 60  # seconds `Prefer: wait=N` may hold a create request
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+)")
# printable ASCII, no space at either end (a proxy may trim those): what a header carries intact
IDEMPOTENCY_KEY = r"[!-~](?:[ -~]{0,253}[!-~])?"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY)
# a page cursor: the page's last job as 8 bytes of creation time (microseconds since 1970) and
# the 12 bytes of its id, url-safe base64 without padding. Every string of this shape decodes
# to a position in the list, so no well-formed cursor is refused.
CURSOR = r"[A-Za-z0-9_-]{27}"
_CURSOR = re.compile(CURSOR)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


class TooManyRequests(VeoError):
    code = "too_many_streams"
    status = 429


def _svc(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def decode_body(body: bytes, kind: type[Any]) -> Any:
    """Decode a JSON body into ``kind``; the constraints on its fields (``veo.jobs``,
    ``veo.wire``) are checked here, and a refusal names the field first."""
    try:
        try:
            return msgspec.json.decode(body, type=kind)
        except msgspec.ValidationError:
            # JSON Schema's `integer` is a value, not a spelling: 2.0 is one, and the document
            # promises it is accepted. msgspec takes only 2, so integral floats are made ints
            # and the body is checked again (the rare slow path; errors come from this pass).
            return msgspec.convert(_integral(msgspec.json.decode(body)), kind)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        field = msg.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in msg else None
        if "unknown field" in msg:
            field = msg.split("`")[1] if "`" in msg else field
        text = f"{field}: {msg}" if field else msg
        raise InvalidRequest(text, code="invalid_field", details={"field": field}) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def decode_job_request(body: bytes) -> core.JobRequest:
    req: core.JobRequest = decode_body(body, core.JobRequest)
    return req


async def _render_many(request: Request, rows: list[Job]) -> list[wire.JobOut]:
    clips, outputs, finals = await _svc(request).db.details([r.id for r in rows])
    return [render.job(request, row, [c for c in clips if c.job_id == row.id],
                       [o for o in outputs if o.job_id == row.id], finals.get(row.id))
            for row in rows]


async def render_one(request: Request, row: Job) -> wire.JobOut:
    return (await _render_many(request, [row]))[0]


async def _fresh(request: Request, job_id: str) -> wire.JobOut:
    row = await _svc(request).db.get_job(job_id)
    if row is None:
        raise NotFound(f"no job {job_id!r}")
    return await render_one(request, row)


async def _owned(request: Request) -> tuple[Services, User, Job]:
    user = await current_user(request)
    svc = _svc(request)
    return svc, user, await svc.lifecycle.owned(user, request.path_params["job_id"])


def _prefer_wait(request: Request) -> int | None:
    m = _PREFER_WAIT.search(request.headers.get("prefer", ""))
    return min(int(m.group(1)), MAX_PREFER_WAIT) if m else None


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest("Idempotency-Key: 1 to 255 printable ASCII characters, no space at "
                             "either end", details={"field": "Idempotency-Key"})
    return key


async def create(request: Request) -> Response:
    user = await current_user(request)
    svc = _svc(request)
    body = await read_bounded(request, MAX_JOB_BODY)
    req = decode_job_request(body)
    row, created = await svc.lifecycle.create(
        user, req, idempotency_key=_idempotency_key(request), body_hash=core.request_hash(body))
    headers = {"Location": f"/api/jobs/{row.id}"}
    wait = _prefer_wait(request)
    if wait:
        headers["Preference-Applied"] = f"wait={wait}"
        await _wait_terminal(request, user, row, wait)
    elif created:
        # everything the response needs came back from the insert: no second read of the job
        clips, outputs, finals = await svc.db.details([row.id])
        return render.JSON(render.job(request, row, clips, outputs, finals.get(row.id)),
                           status_code=201, headers=headers)
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return render.JSON(await _fresh(request, row.id), status_code=201 if created else 200,
                       headers=headers)


async def _wait_terminal(request: Request, user: User, job: Job, seconds: int) -> None:
    """Hold the request until the job ends or ``seconds`` pass (``Prefer: wait=N``)."""
    hub: Hub = request.app.state.hub
    db = _svc(request).db
    deadline = asyncio.get_running_loop().time() + seconds
    with contextlib.suppress(TooManyStreams):
        async with hub.listen(user.id, job.id) as notices:
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                current = await db.get_job(job.id)
                if current is None or current.status in core.TERMINAL:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(notices.get(), min(left, 2.0))
            return
    while asyncio.get_running_loop().time() < deadline:  # over the stream cap: poll instead
        current = await db.get_job(job.id)
        if current is None or current.status in core.TERMINAL:
            return
        await asyncio.sleep(0.5)


def _cursor_encode(row: Job) -> str:
    micros = (row.created_at - _EPOCH) // timedelta(microseconds=1)
    raw = micros.to_bytes(8, "big") + bytes.fromhex(row.id.removeprefix("job_"))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(cursor: str) -> tuple[datetime, str]:
    if not _CURSOR.fullmatch(cursor):
        raise InvalidRequest("cursor: not a cursor this API returned",
                             details={"field": "cursor"})
    raw = base64.urlsafe_b64decode(cursor + "=")
    try:
        stamp = _EPOCH + timedelta(microseconds=int.from_bytes(raw[:8], "big"))
    except OverflowError:  # past the year 9999: every job is older
        stamp = _LATEST
    return stamp, "job_" + raw[8:].hex()


async def list_jobs(request: Request) -> Response:
    user = await current_user(request)
    q = request.query_params
    unknown = set(q.keys()) - {"limit", "cursor", "status"}
    if unknown:
        raise InvalidRequest(f"{sorted(unknown)[0]}: unknown query parameter",
                             details={"field": sorted(unknown)[0]})
    raw_limit = q.get("limit", "20")
    if not re.fullmatch(r"[0-9]+", raw_limit):  # int() would also take " 5", "+5" and "1_0"
        raise InvalidRequest("limit: must be an integer", details={"field": "limit"})
    limit = int(raw_limit)
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit: between 1 and 100", details={"field": "limit"})
    status = q.get("status")
    if status is not None and status not in {s.value for s in core.JobStatus}:
        raise InvalidRequest(f"status: one of {', '.join(s.value for s in core.JobStatus)}",
                             details={"field": "status"})
    cursor = _cursor_decode(q["cursor"]) if "cursor" in q else None
    rows = await _svc(request).db.list_jobs(user.id, status, cursor, limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    return render.JSON(wire.JobList(data=await _render_many(request, rows),
                                    next_cursor=_cursor_encode(rows[-1]) if has_more else None,
                                    has_more=has_more))


async def get(request: Request) -> Response:
    _, _, row = await _owned(request)
    return render.JSON(await render_one(request, row))


async def cancel(request: Request) -> Response:
    svc, _, row = await _owned(request)
    await svc.lifecycle.cancel(row)
    return render.JSON(await _fresh(request, row.id))


async def retry(request: Request) -> Response:
    svc, _, row = await _owned(request)
    await svc.lifecycle.retry(row)
    return render.JSON(await _fresh(request, row.id), status_code=202)


async def delete(request: Request) -> Response:
    svc, _, row = await _owned(request)
    await svc.lifecycle.delete(row)
    return Response(status_code=204)


def _clip_index(request: Request) -> int:
    raw = request.path_params["index"]
    if not re.fullmatch(r"[0-9]{1,2}", raw) or int(raw) >= core.MAX_CLIPS:
        raise NotFound(f"no clip {raw!r}")
    return int(raw)


async def select(request: Request) -> Response:
    svc, _, row = await _owned(request)
    idx = _clip_index(request)
    body: wire.SelectIn = decode_body(await read_bounded(request, MAX_SMALL_BODY), wire.SelectIn)
    await svc.lifecycle.select(row, idx, body.variant)
    return render.JSON(await _fresh(request, row.id))


async def redo(request: Request) -> Response:
    svc, _, row = await _owned(request)
    idx = _clip_index(request)
    raw = await read_bounded(request, MAX_SMALL_BODY)
    body: wire.RedoIn = decode_body(raw, wire.RedoIn) if raw.strip() else wire.RedoIn()
    await svc.lifecycle.redo(row, idx, body.prompt)
    return render.JSON(await _fresh(request, row.id), status_code=202)


async def build_final(request: Request) -> Response:
    svc, _, row = await _owned(request)
    raw = await read_bounded(request, MAX_SMALL_BODY)
    spec: core.FinalSpec = decode_body(raw, core.FinalSpec) if raw.strip() else core.FinalSpec()
    await svc.lifecycle.rebuild_final(row, core.final_options(spec))
    return render.JSON(await _fresh(request, row.id), status_code=202)


# a redo keeps an output's URL and replaces its bytes: caches must ask again every time
_NO_CACHE = {"Cache-Control": "private, no-cache"}


async def _serve(request: Request, key: str | None, content_type: str,
                 filename: str) -> Response:
    """An object as a redirect to a short-lived presigned URL (S3) or a ranged stream (local)."""
    storage = _svc(request).storage
    if key is None or await storage.head(key) is None:
        raise NotFound("the file is not stored (yet)")
    url = await storage.presign(key, PRESIGN_SECONDS)
    if url is not None:
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    assert isinstance(storage, LocalStorage)
    return FileResponse(storage.path(key), media_type=content_type, filename=filename,
                        content_disposition_type="inline", headers=_NO_CACHE)


async def _link(request: Request, key: str | None) -> Response:
    """A short-lived URL for the object that needs no token: a presigned URL (S3), or a signed
    path of this service (local), so a <video> element can stream it with Range requests."""
    svc = _svc(request)
    if key is None or await svc.storage.head(key) is None:
        raise NotFound("the file is not stored (yet)")
    expires = int(time.time()) + PRESIGN_SECONDS
    url = await svc.storage.presign(key, PRESIGN_SECONDS)
    if url is None:
        url = f"{str(request.base_url).rstrip('/')}/api/files/{svc.box.sign_link(key, expires)}"
    return render.JSON(wire.LinkOut(url=url, expires_at=datetime.fromtimestamp(expires, UTC)),
                       headers={"Cache-Control": "no-store"})


async def signed_file(request: Request) -> Response:
    """``GET /api/files/{token}``: an object named by a link token (no bearer token)."""
    svc = _svc(request)
    try:
        key = svc.box.open_link(request.path_params["token"], time.time())
    except CryptoError:
        raise NotFound("this link is unknown or has expired") from None
    storage = svc.storage
    if not isinstance(storage, LocalStorage) or await storage.head(key) is None:
        raise NotFound("this link is unknown or has expired")
    media_type = "image/jpeg" if key.endswith(".jpg") else "video/mp4"
    return FileResponse(storage.path(key), media_type=media_type,
                        content_disposition_type="inline", headers=_NO_CACHE)


async def output_link(request: Request) -> Response:
    svc, _, row = await _owned(request)
    out = await svc.db.get_output(request.path_params["output_id"], row.id)
    if out is None:
        raise NotFound(f"no output {request.path_params['output_id']!r}")
    return await _link(request, out.object_key)


async def final_link(request: Request) -> Response:
    svc, _, row = await _owned(request)
    final = await svc.db.get_final(row.id)
    if final is None or final.status != "succeeded":
        raise NotFound("this job has no final video (yet)")
    return await _link(request, final.object_key)


async def output(request: Request) -> Response:
    svc, _, row = await _owned(request)
    out = await svc.db.get_output(request.path_params["output_id"], row.id)
    if out is None:
        raise NotFound(f"no output {request.path_params['output_id']!r}")
    return await _serve(request, out.object_key, out.content_type,
                        f"{row.id}-{out.clip}-{out.variant}.mp4")


async def poster(request: Request) -> Response:
    svc, _, row = await _owned(request)
    out = await svc.db.get_output(request.path_params["output_id"], row.id)
    if out is None:
        raise NotFound(f"no output {request.path_params['output_id']!r}")
    return await _serve(request, out.poster_key, "image/jpeg",
                        f"{row.id}-{out.clip}-{out.variant}.jpg")


async def final_video(request: Request) -> Response:
    svc, _, row = await _owned(request)
    final = await svc.db.get_final(row.id)
    if final is None or final.status != "succeeded":
        raise NotFound("this job has no final video (yet)")
    return await _serve(request, final.object_key, "video/mp4", f"{row.id}-final.mp4")


async def final_poster(request: Request) -> Response:
    svc, _, row = await _owned(request)
    final = await svc.db.get_final(row.id)
    if final is None or final.status != "succeeded":
        raise NotFound("this job has no final video (yet)")
    return await _serve(request, final.poster_key, "image/jpeg", f"{row.id}-final.jpg")


async def events(request: Request) -> Response:
    """Server-Sent Events of the job until it ends: an ``event: job`` with the whole job each
    time it changes. One Redis subscription per process feeds every stream (``veo.events``)."""
    svc, user, row = await _owned(request)
    hub: Hub = request.app.state.hub
    stack = contextlib.AsyncExitStack()
    try:
        # listen before the first read, so no change between the two is missed
        notices = await stack.enter_async_context(hub.listen(user.id, row.id))
    except TooManyStreams:
        raise TooManyRequests(f"at most {hub.per_user} open event streams per user") from None

    async def stream() -> AsyncIterator[dict[str, str]]:
        last: bytes | None = None
        async with stack:
            while True:
                current = await svc.db.get_job(row.id)
                if current is None:
                    yield {"event": "deleted", "data": "{}"}
                    return
                body = render.encode(await render_one(request, current))
                if body != last:
                    last = body
                    yield {"event": "job", "data": body.decode()}
                if current.status in core.TERMINAL:
                    return
                with contextlib.suppress(TimeoutError):
                    # a missed notice (Redis blip) is caught up at the next tick
                    await asyncio.wait_for(notices.get(), SSE_KEEPALIVE)
                while not notices.empty():
                    notices.get_nowait()

    return EventSourceResponse(stream(), ping=int(SSE_KEEPALIVE), sep="\n",
                               headers={"Cache-Control": "no-cache",
                                        "X-Accel-Buffering": "no"})


async def models(request: Request) -> Response:
    svc = _svc(request)
    today = datetime.now(UTC).date()
    default = svc.settings.default_model
    return render.JSON(wire.ModelList(
        data=[render.model(m, default, today) for m in sorted(svc.catalog,
                                                               key=lambda m: m.id)],
        default=default))
