"""Turns records into the wire types of ``veo.wire``."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from veo import wire
from veo.catalog import Model
from veo.keypool import masked
from veo.records import ApiKey, Clip, ErrorInfo, Final, Job, Output

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


def _error(err: ErrorInfo | None) -> wire.JobError | None:
    if err is None:
        return None
    return wire.JobError(code=err.code, message=err.message, retryable=err.retryable,
                         details=err.details)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def job(request: Request, row: Job, clips: list[Clip], outputs: list[Output],
        final: Final | None) -> wire.JobOut:
    base = _base(request)
    jid = row.id
    selected = {c.idx: c.selected for c in clips}
    outs = [
        wire.OutputOut(
            id=o.id, clip=o.clip, variant=o.variant,
            url=f"{base}/api/jobs/{jid}/outputs/{o.id}", size=o.size, sha256=o.sha256,
            content_type=o.content_type, selected=selected.get(o.clip, 0) == o.variant,
            poster_url=f"{base}/api/jobs/{jid}/outputs/{o.id}/poster" if o.poster_key else None,
            duration_seconds=o.duration_seconds)
        for o in outputs
    ]
    by_clip: dict[int, list[wire.OutputOut]] = {}
    for out in outs:
        by_clip.setdefault(out.clip, []).append(out)
    p = row.params
    return wire.JobOut(
        id=jid, status=row.status, paused_reason=row.paused_reason, backend=row.backend,
        requested_backend=row.requested_backend, model=row.model,
        aspect_ratio=p.aspect_ratio, resolution=p.resolution,
        duration_seconds=p.duration_seconds, number_of_videos=p.number_of_videos,
        negative_prompt=p.negative_prompt, person_generation=p.person_generation,
        enhance_prompt=p.enhance_prompt, webhook_url=row.webhook_url,
        continuity=row.continuity,
        progress=100 if row.status == "succeeded" else row.progress,
        queue_position=row.queue_position if row.status == "queued" else None,
        flow_needs_auth=row.flow_needs_auth,
        clips=[wire.ClipOut(index=c.idx, prompt=c.prompt, status=c.status,
                            progress=100 if c.status == "succeeded" else c.progress,
                            first_frame=c.first_frame, last_frame=c.last_frame,
                            reference_images=list(c.reference_images), extend_from=c.extend_from,
                            selected=c.selected, outputs=by_clip.get(c.idx, []),
                            error=_error(c.error)) for c in clips],
        outputs=outs, error=_error(row.error), created_at=row.created_at,
        started_at=row.started_at, finished_at=row.finished_at, attempts=row.attempts,
        urls=wire.JobUrls(get=f"{base}/api/jobs/{jid}", cancel=f"{base}/api/jobs/{jid}/cancel",
                          events=f"{base}/api/jobs/{jid}/events"),
        final=None if final is None else final_out(base, jid, final, clips, outputs),
    )


def final_out(base: str, job_id: str, final: Final, clips: list[Clip],
              outputs: list[Output]) -> wire.FinalOut:
    done = final.status == "succeeded"
    picked = {c.idx: c.selected for c in clips}
    now = [{"clip": o.clip, "variant": o.variant, "sha256": o.sha256} for o in outputs
           if picked.get(o.clip) == o.variant]
    o = final.options
    return wire.FinalOut(
        status=final.status, transition=o.transition, crossfade_seconds=o.crossfade_seconds,
        trim_start_frames=o.trim_start_frames, trim_end_frames=o.trim_end_frames,
        loudnorm=o.loudnorm, stale=done and final.selection is not None and
        sorted(final.selection, key=lambda s: s["clip"]) != now,
        url=f"{base}/api/jobs/{job_id}/final" if done else None,
        poster_url=f"{base}/api/jobs/{job_id}/final/poster" if done else None,
        duration_seconds=final.duration_seconds if done else None,
        size=final.size if done else None, sha256=final.sha256 if done else None,
        error=_error(final.error))


def key(row: ApiKey) -> wire.KeyOut:
    return wire.KeyOut(id=row.id, label=row.label, masked=masked(row.last4),
                       status=row.status, cooling_until=row.cooling_until,
                       last_error=row.last_error, created_at=row.created_at)


def model(m: Model, default: str, today: date) -> wire.ModelOut:
    return wire.ModelOut(
        id=m.id, description=m.description, protocol=m.protocol, backends=list(m.backends),
        aliases=list(m.aliases), flow_label=m.flow_label,
        capabilities={} if m.retired(today) else {b: m.on(b) for b in m.backends},
        shutdown_date=m.shutdown.isoformat() if m.shutdown else None,
        replacement=m.replacement, retired=m.retired(today), default=m.id == default)
