"""Turns repository rows into the response types of ``schemas``."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from veo import wire
from veo.db import Row
from veo.keypool import masked

_enc = msgspec.json.Encoder()
encode = _enc.encode


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _enc.encode(content)


def error(status: int, code: str, message: str, details: Any = None,
          headers: dict[str, str] | None = None) -> JSON:
    return JSON(wire.ErrorBody(wire.ApiError(code, message, details)), status_code=status,
                headers=headers)


def _job_error(raw: Any) -> wire.JobError | None:
    if not raw:
        return None
    return wire.JobError(code=raw.get("code", "error"), message=raw.get("message", ""),
                            retryable=bool(raw.get("retryable", False)),
                            details=raw.get("details"))


def job(request: Request, row: Row, clips: list[Row], outputs: list[Row]) -> wire.JobOut:
    base = str(request.base_url).rstrip("/")
    jid = row["id"]
    outs = [
        wire.OutputOut(id=o["id"], clip=o["clip"], variant=o["variant"],
                          url=f"{base}/api/jobs/{jid}/outputs/{o['id']}", size=o["size"],
                          sha256=o["sha256"], content_type=o["content_type"])
        for o in outputs
    ]
    by_clip: dict[int, list[wire.OutputOut]] = {}
    for o in outs:
        by_clip.setdefault(o.clip, []).append(o)
    p = row["params"]
    return wire.JobOut(
        id=jid, status=row["status"], paused_reason=row["paused_reason"], backend=row["backend"],
        requested_backend=row["requested_backend"], model=row["model"],
        aspect_ratio=p.get("aspect_ratio", "16:9"), resolution=p.get("resolution", "720p"),
        duration_seconds=p.get("duration_seconds", 8),
        number_of_videos=p.get("number_of_videos", 1),
        negative_prompt=p.get("negative_prompt"), person_generation=p.get("person_generation"),
        enhance_prompt=p.get("enhance_prompt"), webhook_url=row["webhook_url"],
        progress=100 if row["status"] == "succeeded" else row["progress"],
        queue_position=row.get("queue_position") if row["status"] == "queued" else None,
        flow_needs_auth=row["flow_needs_auth"],
        clips=[wire.ClipOut(index=c["idx"], prompt=c["prompt"], status=c["status"],
                               progress=c["progress"], first_frame=c["first_frame"],
                               last_frame=c["last_frame"], outputs=by_clip.get(c["idx"], []),
                               error=_job_error(c["error"])) for c in clips],
        outputs=outs, error=_job_error(row["error"]), created_at=row["created_at"],
        started_at=row["started_at"], finished_at=row["finished_at"], attempts=row["attempts"],
        urls=wire.JobUrls(get=f"{base}/api/jobs/{jid}", cancel=f"{base}/api/jobs/{jid}/cancel",
                             events=f"{base}/api/jobs/{jid}/events"),
    )


def key(row: Row) -> wire.KeyOut:
    return wire.KeyOut(id=row["id"], label=row["label"], masked=masked(row["last4"]),
                          status=row["status"], cooling_until=row["cooling_until"],
                          last_error=row["last_error"], created_at=row["created_at"])
