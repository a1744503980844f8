"""Job routes: create, list, get, events (SSE), cancel, retry, delete, output download."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from veo import jobs as core
from veo import keys, lifecycle, wire
from veo.db import Row
from veo.errors import BadRequest, InvalidRequest, NotFound
from veo.services import Services
from veo.storage import LocalStorage
from veo.web import render
from veo.web.auth import current_user
from veo.web.uploads import read_bounded

_job_request = msgspec.json.Decoder(core.JobRequest)
MAX_JOB_BODY = 256 * 1024
PRESIGN_SECONDS = 300  # long enough to start a download, short enough to be useless if leaked
SSE_KEEPALIVE = 15.0  # seconds between comments that keep proxies from closing the stream


def _svc(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def _render_many(request: Request, rows: list[Row]) -> list[wire.JobOut]:
    clips, outputs = await _svc(request).db.clips_and_outputs([r["id"] for r in rows])
    out = []
    for row in rows:
        out.append(render.job(request, row, [c for c in clips if c["job_id"] == row["id"]],
                              [o for o in outputs if o["job_id"] == row["id"]]))
    return out


async def render_one(request: Request, row: Row) -> wire.JobOut:
    return (await _render_many(request, [row]))[0]


def decode_job_request(body: bytes) -> core.JobRequest:
    try:
        return _job_request.decode(body)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        field = msg.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in msg else None
        if "unknown field" in msg:
            field = msg.split("`")[1] if "`" in msg else field
        raise InvalidRequest(msg, code="invalid_field", details={"field": field}) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


async def create(request: Request) -> Response:
    user = await current_user(request)
    svc = _svc(request)
    body = await read_bounded(request, MAX_JOB_BODY)
    req = decode_job_request(body)
    row, created = await lifecycle.create_job(
        svc, user, req, idempotency_key=request.headers.get("idempotency-key"),
        body_hash=core.request_hash(body))
    headers = {"Location": f"/api/jobs/{row['id']}"}
    if created:
        # everything the response needs came back from the insert: no second read
        clips = [{"idx": i, "prompt": c.prompt, "status": "queued", "progress": 0,
                  "first_frame": c.first_frame, "last_frame": c.last_frame, "error": None}
                 for i, c in enumerate(req.clips or [core.ClipSpec(prompt=req.prompt or "")])]
        return render.JSON(render.job(request, row, clips, []), status_code=201,
                           headers=headers)
    headers["Idempotent-Replayed"] = "true"
    fresh = await svc.db.get_job(row["id"])
    assert fresh is not None
    return render.JSON(await render_one(request, fresh), headers=headers)


def _cursor_encode(row: Row) -> str:
    raw = f"{row['created_at'].isoformat()}|{row['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), job_id
    except Exception:
        raise InvalidRequest("cursor: not a cursor this API returned",
                             details={"field": "cursor"}) from None


async def list_jobs(request: Request) -> Response:
    user = await current_user(request)
    q = request.query_params
    unknown = set(q.keys()) - {"limit", "cursor", "status"}
    if unknown:
        raise InvalidRequest(f"{sorted(unknown)[0]}: unknown query parameter",
                             details={"field": sorted(unknown)[0]})
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise InvalidRequest("limit: must be an integer", details={"field": "limit"}) from None
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit: between 1 and 100", details={"field": "limit"})
    status = q.get("status")
    if status is not None and status not in {s.value for s in core.JobStatus}:
        raise InvalidRequest(f"status: one of {', '.join(s.value for s in core.JobStatus)}",
                             details={"field": "status"})
    cursor = _cursor_decode(q["cursor"]) if q.get("cursor") else None
    rows = await _svc(request).db.list_jobs(user["id"], status, cursor, limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    return render.JSON(wire.JobList(data=await _render_many(request, rows),
                                       next_cursor=_cursor_encode(rows[-1]) if has_more else None,
                                       has_more=has_more))


async def get(request: Request) -> Response:
    user = await current_user(request)
    row = await lifecycle.owned_job(_svc(request), user, request.path_params["job_id"])
    return render.JSON(await render_one(request, row))


async def _act(request: Request, action: Callable[[Services, Row], Awaitable[Row]],
               status_code: int) -> Response:
    user = await current_user(request)
    svc = _svc(request)
    row = await lifecycle.owned_job(svc, user, request.path_params["job_id"])
    await action(svc, row)
    fresh = await svc.db.get_job(row["id"])
    assert fresh is not None
    return render.JSON(await render_one(request, fresh), status_code=status_code)


async def cancel(request: Request) -> Response:
    return await _act(request, lifecycle.cancel_job, 200)


async def retry(request: Request) -> Response:
    return await _act(request, lifecycle.retry_job, 202)


async def delete(request: Request) -> Response:
    user = await current_user(request)
    svc = _svc(request)
    row = await lifecycle.owned_job(svc, user, request.path_params["job_id"])
    await lifecycle.delete_job(svc, row)
    return Response(status_code=204)


async def output(request: Request) -> Response:
    user = await current_user(request)
    svc = _svc(request)
    row = await lifecycle.owned_job(svc, user, request.path_params["job_id"])
    out = await svc.db.get_output(request.path_params["output_id"], row["id"])
    if out is None:
        raise NotFound(f"no output {request.path_params['output_id']!r}")
    url = await svc.storage.presign(out["object_key"], PRESIGN_SECONDS)
    if url is not None:
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    assert isinstance(svc.storage, LocalStorage)
    path = svc.storage.path(out["object_key"])
    filename = f"{row['id']}-{out['clip']}-{out['variant']}.mp4"
    return FileResponse(path, media_type=out["content_type"], filename=filename,
                        content_disposition_type="inline")


async def events(request: Request) -> Response:
    user = await current_user(request)
    svc = _svc(request)
    row = await lifecycle.owned_job(svc, user, request.path_params["job_id"])
    job_id = row["id"]
    # subscribe before the first read so no change between the two is missed
    pubsub = svc.redis.pubsub()
    await pubsub.subscribe(keys.job_events_channel(job_id))

    async def stream() -> AsyncIterator[bytes]:
        last: tuple[object, ...] | None = None
        try:
            while True:
                current = await svc.db.get_job(job_id)
                if current is None:
                    yield b"event: deleted\ndata: {}\n\n"
                    return
                state = (current["status"], current["progress"], current["paused_reason"],
                         current["queue_position"])
                if state != last:
                    last = state
                    body = render.encode(await render_one(request, current))
                    yield b"event: job\ndata: " + body + b"\n\n"
                if current["status"] in core.TERMINAL:
                    return
                msg = await pubsub.get_message(ignore_subscribe_messages=True,
                                               timeout=SSE_KEEPALIVE)
                if msg is None:
                    yield b": keepalive\n\n"
        finally:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe()
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
