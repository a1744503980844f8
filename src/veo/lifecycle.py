"""Use cases on jobs: create, enqueue, cancel, retry, delete, pause and resume.

The web app, the worker and the CLI call these; they combine the core rules of ``veo.jobs`` with
the repository, the queue and storage, and emit the SPEC §7 events. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec
from arq.constants import default_queue_name, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job

from veo import jobs, keys, logs
from veo.db import Row
from veo.errors import Conflict, InvalidRequest, NotFound
from veo.keypool import KeyPool
from veo.services import Services

log = logs.get_logger("veo.lifecycle")

RUN_JOB = "run_job"
DELIVER_WEBHOOK = "deliver_webhook"


async def publish(svc: Services, job_id: str, status: str, progress: int | None = None) -> None:
    """Tell SSE listeners that a job changed; they re-read the record from PostgreSQL."""
    payload = json.dumps({"job_id": job_id, "status": status, "progress": progress})
    await svc.redis.publish(keys.job_events_channel(job_id), payload)


# arq's enqueue_job takes three round trips (WATCH, EXISTS, MULTI/EXEC); this writes the same
# keys in one atomic script, and like arq refuses an id whose job or result key exists.
_ENQUEUE = """
if redis.call('exists', KEYS[1], KEYS[2]) == 0 then
  redis.call('psetex', KEYS[1], ARGV[1], ARGV[2])
  redis.call('zadd', KEYS[3], ARGV[3], ARGV[4])
  return 1
end
return 0
"""
_JOB_TTL_MS = 86_400_000  # arq's expires_extra_ms: a job not started within a day expires


def queue_of(job: Row) -> str:
    if job["backend"] == "flow":
        return keys.flow_queue(job.get("flow_account") or "default")
    return default_queue_name


async def enqueue(svc: Services, job: Row, *, defer: float | None = None) -> bool:
    """Queue one run of a job (a row with id, run_seq, backend, flow_account). The arq id
    includes the run number, so repeating it is a no-op."""
    job_id, run_seq = job["id"], job["run_seq"]
    arq_id = keys.arq_job_id(job_id, run_seq)
    now_ms = int(time.time() * 1000)
    score = now_ms + int((defer or 0) * 1000)
    payload = serialize_job(RUN_JOB, (job_id, run_seq), {}, None, now_ms)
    ttl = str(_JOB_TTL_MS + score - now_ms)
    script: Any = svc.redis.eval  # redis-py types eval's arguments as str only
    added = await script(_ENQUEUE, 3, job_key_prefix + arq_id, result_key_prefix + arq_id,
                         queue_of(job), ttl, payload, str(score), arq_id)
    return bool(added)


async def check_webhook_url(url: str, allow_private: bool) -> None:
    """Refuse URLs that resolve to private, loopback or link-local addresses (SSRF)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("webhook_url: must be an http(s) URL",
                             details={"field": "webhook_url"})
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM)
    except OSError:
        raise InvalidRequest("webhook_url: host does not resolve",
                             details={"field": "webhook_url"}) from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_global:
            raise InvalidRequest("webhook_url: resolves to a private or loopback address",
                                 details={"field": "webhook_url"})


async def create_job(svc: Services, user: Row, req: jobs.JobRequest, *,
                     idempotency_key: str | None, body_hash: str) -> tuple[Row, bool]:
    """Validate, route, record, then enqueue. Returns (job, created)."""
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 255:
            raise InvalidRequest("Idempotency-Key: 1 to 255 characters",
                                 details={"field": "Idempotency-Key"})
        existing = await svc.db.job_by_idempotency(user["id"], idempotency_key)
        if existing is not None:
            return _replay(existing, body_hash), False

    valid = jobs.validate(req, svc.settings.default_model)
    frame_ids = {f for c in valid.clips for f in (c.first_frame, c.last_frame) if f}
    if frame_ids:
        found = await svc.db.uploads_by_ids(sorted(frame_ids), user["id"])
        for i, clip in enumerate(valid.clips):
            for field in ("first_frame", "last_frame"):
                upload_id = getattr(clip, field)
                if upload_id and upload_id not in found:
                    raise InvalidRequest(f"clips[{i}].{field}: no upload {upload_id!r}",
                                         details={"field": f"clips[{i}].{field}"})
    if valid.webhook_url:
        await check_webhook_url(valid.webhook_url, svc.settings.webhook_allow_private)

    has_key = valid.requested_backend != "flow" and await KeyPool(
        svc.db, svc.box, svc.settings).has_usable(user["id"])
    backend = jobs.choose_backend(valid.requested_backend, has_usable_key=has_key,
                                  flow_enabled=svc.settings.flow_enabled)
    try:
        job, _ = await svc.db.create_job(
            user_id=user["id"], backend=backend, requested_backend=valid.requested_backend,
            model=valid.model, params=_params_dict(valid.params), webhook_url=valid.webhook_url,
            idempotency_key=idempotency_key, request_hash=body_hash,
            flow_account=svc.settings.flow_account if backend == "flow" else None,
            clips=[(c.prompt, c.first_frame, c.last_frame) for c in valid.clips])
    except Conflict:
        assert idempotency_key is not None
        existing = await svc.db.job_by_idempotency(user["id"], idempotency_key)
        if existing is None:
            raise
        return _replay(existing, body_hash), False
    log.info("job.created", job_id=job["id"], backend=backend, model=valid.model,
             clips=len(valid.clips), user_id=user["id"])
    await enqueue(svc, job)
    return job, True


def _replay(existing: Row, body_hash: str) -> Row:
    if existing["request_hash"] != body_hash:
        raise Conflict("Idempotency-Key was already used with a different request body",
                       code="idempotency_key_reused")
    return existing


def _params_dict(params: jobs.Params) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(params)
    return out


async def owned_job(svc: Services, user: Row, job_id: str) -> Row:
    job = await svc.db.get_job(job_id)
    if job is None or job["user_id"] != user["id"]:
        raise NotFound(f"no job {job_id!r}")
    return job


async def cancel_job(svc: Services, job: Row) -> Row:
    if job["status"] not in jobs.CANCELABLE:
        raise Conflict(f"a {job['status']} job cannot be canceled", code="not_cancelable")
    row = await svc.db.cancel_job(job["id"])
    if row is None:
        raise Conflict("the job finished before it could be canceled", code="not_cancelable")
    log.info("job.canceled", job_id=job["id"], backend=job["backend"])
    await publish(svc, job["id"], "canceled")
    await notify_terminal(svc, row)
    return row


async def retry_job(svc: Services, job: Row) -> Row:
    if job["status"] not in jobs.RETRYABLE:
        raise Conflict(f"only failed or canceled jobs can be retried, this one is {job['status']}",
                       code="not_retryable")
    row = await svc.db.retry_job(job["id"])
    if row is None:
        raise Conflict("the job changed state; try again", code="not_retryable")
    await enqueue(svc, row)
    log.info("job.resumed", job_id=row["id"], backend=row["backend"], reason="retry")
    await publish(svc, row["id"], "queued", 0)
    return row


async def delete_job(svc: Services, job: Row) -> None:
    if job["status"] == jobs.JobStatus.RUNNING:
        raise Conflict("cancel the running job before deleting it", code="job_running")
    # objects first: if storage fails the row stays and the delete can be repeated
    await svc.storage.delete_prefix(keys.outputs_prefix(job["id"]))
    await svc.storage.delete_prefix(keys.debug_prefix(job["id"]))
    if not await svc.db.delete_job(job["id"]):
        raise Conflict("the job started running; cancel it first", code="job_running")
    log.info("job.deleted", job_id=job["id"])


async def retry_failed_flow(svc: Services, account: str | None = None) -> int:
    rows = await svc.db.retry_failed_flow(account)
    for row in rows:
        await enqueue(svc, row)
        log.info("job.resumed", job_id=row["id"], backend="flow", reason="retry_failed")
    return len(rows)


async def resume_flow_account(svc: Services, account: str) -> int:
    """Clear the pause flag and queue every job that waited for a new login."""
    await svc.redis.delete(keys.flow_paused_flag(account))
    rows = await svc.db.resume_flow(account)
    for row in rows:
        await enqueue(svc, row)
        log.info("job.resumed", job_id=row["id"], backend="flow", account=account,
                 reason="flow_auth_reloaded")
        await publish(svc, row["id"], "queued")
    return len(rows)


async def resume_due_api_jobs(svc: Services) -> int:
    rows = await svc.db.resume_api_due()
    for row in rows:
        await enqueue(svc, row)
        log.info("job.resumed", job_id=row["id"], backend="api", reason="key_available")
        await publish(svc, row["id"], "queued")
    return len(rows)


async def flow_paused(svc: Services, account: str) -> bool:
    return bool(await svc.redis.exists(keys.flow_paused_flag(account)))


async def notify_terminal(svc: Services, job: Row) -> None:
    """Queue the webhook delivery of a job that reached a terminal state."""
    if job.get("webhook_url"):
        event_id = f"evt_{job['id']}_{job['status']}_{job['run_seq']}"
        await svc.redis.enqueue_job(DELIVER_WEBHOOK, job["id"], event_id, _job_id=event_id)
