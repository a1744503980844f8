"""``run_job``: one run of one job, read top to bottom.

claim (guarded) → heartbeat beside the work → clips in order (or a few at once for the API) →
finish (guarded). A lost heartbeat means someone else owns the job now (a cancel, or the
reconciler after we were presumed dead): the work stops without writing. Pauses spend no try.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from veo import lifecycle, logs
from veo.db import Row
from veo.errors import AllKeysCooling, GenerationFailed, LoginRequired, NoUsableKey, VeoError
from veo.services import Services
from veo.worker import alerts
from veo.worker.context import Backend, ClipRun, Ctx

log = logs.get_logger("veo.worker")

RETRY_BACKOFF = (5.0, 30.0, 120.0, 300.0)  # seconds before run n+1 after a retryable failure


class _Lost(Exception):
    """The job is no longer ours (canceled, or re-queued by the reconciler)."""


async def run_job(ctx: Ctx, job_id: str, run_seq: int) -> str:
    svc = ctx["services"]
    job = await svc.db.get_job(job_id)
    if job is None or job["run_seq"] != run_seq or job["status"] != "queued":
        return "stale"
    backend = ctx["backends"].get(job["backend"])
    if backend is None:
        return await _no_backend(svc, job)
    async with backend.slot():
        reason = await backend.blocked(job)
        if reason is not None:
            paused = await svc.db.pause_job(job_id, run_seq, reason)
            if paused is not None:
                log.info("job.paused", job_id=job_id, backend=job["backend"], reason=reason,
                         account=job.get("flow_account"))
                await lifecycle.publish(svc, job_id, "paused")
            return "paused"
        claimed = await svc.db.claim_job(job_id, run_seq, ctx["worker_id"])
        if claimed is None:
            return "stale"
        log.info("job.claimed", job_id=job_id, backend=job["backend"], attempt=claimed["attempts"],
                 account=job.get("flow_account"))
        await lifecycle.publish(svc, job_id, "running", claimed["progress"])
        return await _execute(svc, backend, claimed)


async def _no_backend(svc: Services, job: Row) -> str:
    # routed to a backend this worker does not run (FLOW_BACKEND_ENABLED differs between the
    # web and the worker): fail loudly and retryably rather than bouncing it around the queue
    claimed = await svc.db.claim_job(job["id"], job["run_seq"], "none")
    if claimed is None:
        return "stale"
    err = GenerationFailed(f"no worker runs the {job['backend']} backend (is "
                           "FLOW_BACKEND_ENABLED set the same on web and worker?)",
                           code="backend_unavailable", retryable=True)
    return await _finish(svc, claimed, "failed", err.as_dict())


async def _execute(svc: Services, backend: Backend, job: Row) -> str:
    job_id, run_seq = job["id"], job["run_seq"]
    work = asyncio.create_task(_run_clips(svc, backend, job), name=f"clips:{job_id}")
    lost = asyncio.Event()

    async def beat() -> None:
        while not work.done():
            await asyncio.sleep(svc.settings.heartbeat_seconds)
            if not await svc.db.heartbeat(job_id, run_seq):
                lost.set()
                work.cancel()
                return

    beater = asyncio.create_task(beat(), name=f"beat:{job_id}")
    try:
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            if lost.is_set():
                raise _Lost() from None
            # the worker itself is stopping: hand the job back before going
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            await asyncio.shield(_requeue(svc, job, None, reason="shutdown"))
            raise
        return await _finish(svc, job, "succeeded", None)
    except _Lost:
        log.info("job.released", job_id=job_id, backend=job["backend"])
        return "released"
    except LoginRequired as exc:
        return await _pause_flow(svc, job, exc)
    except AllKeysCooling as exc:
        until = datetime.fromtimestamp(exc.until, UTC) if exc.until else None
        if await svc.db.pause_job(job_id, run_seq, "api_keys_exhausted", until) is not None:
            log.info("job.paused", job_id=job_id, backend="api", reason="api_keys_exhausted",
                     resume_at=until.isoformat() if until else None)
            await lifecycle.publish(svc, job_id, "paused")
            await _alert_exhausted(svc, job)
        return "paused"
    except NoUsableKey as exc:
        return await _finish(svc, job, "failed", exc.as_dict())
    except VeoError as exc:
        if exc.retryable and job["attempts"] < svc.settings.max_attempts:
            await _requeue(svc, job, exc.as_dict(), reason=exc.code)
            return "retrying"
        return await _finish(svc, job, "failed", exc.as_dict())
    except Exception as exc:
        log.exception("job.crashed", job_id=job_id, backend=job["backend"])
        err = GenerationFailed(f"internal error: {type(exc).__name__}", code="internal",
                               retryable=True)
        if job["attempts"] < svc.settings.max_attempts:
            await _requeue(svc, job, err.as_dict(), reason="internal")
            return "retrying"
        return await _finish(svc, job, "failed", err.as_dict())
    finally:
        beater.cancel()
        with contextlib.suppress(BaseException):
            await beater


async def _run_clips(svc: Services, backend: Backend, job: Row) -> None:
    clips = await svc.db.clips_of_job(job["id"])
    progress_of = {c["idx"]: (100 if c["status"] == "succeeded" else c["progress"])
                   for c in clips}
    todo = [c for c in clips if c["status"] != "succeeded"]
    gate = asyncio.Semaphore(max(1, backend.clip_concurrency))

    async def mark(clip: Row, status: str, error: dict[str, Any] | None, progress: int) -> None:
        await svc.db.set_clip(job["id"], job["run_seq"], clip["idx"], status, error, progress)

    async def one(clip: Row) -> None:
        async with gate:
            await mark(clip, "running", None, clip["progress"])
            run = ClipRun(svc=svc, job=job, clip=clip, clips_total=len(clips),
                          progress_of=progress_of)
            try:
                await backend.run_clip(run)
            except GenerationFailed as exc:
                final = not exc.retryable
                await mark(clip, "failed" if final else "queued", exc.as_dict() if final else None,
                           run.progress_of.get(clip["idx"], 0))
                raise
            except BaseException:
                await asyncio.shield(mark(clip, "queued", None,
                                          run.progress_of.get(clip["idx"], 0)))
                raise
            progress_of[clip["idx"]] = 100
            await mark(clip, "succeeded", None, 100)

    tasks = [asyncio.create_task(one(c)) for c in todo]
    try:
        # the first failure decides the job; siblings stop so no work is paid for in vain
        _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(BaseException):
                await t
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    except asyncio.CancelledError:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _finish(svc: Services, job: Row, status: str, error: dict[str, Any] | None) -> str:
    row = await svc.db.finish_job(job["id"], job["run_seq"], status, error)
    if row is None:
        return "stale"
    event = "job.succeeded" if status == "succeeded" else "job.failed"
    fields: dict[str, Any] = {"job_id": job["id"], "backend": job["backend"],
                              "attempt": job["attempts"]}
    if error:
        fields.update(code=error.get("code"), error=error.get("message"))
    (log.info if status == "succeeded" else log.warning)(event, **fields)
    await lifecycle.publish(svc, job["id"], status, row["progress"])
    await lifecycle.notify_terminal(svc, row)
    return status


async def _requeue(svc: Services, job: Row, error: dict[str, Any] | None, *, reason: str) -> None:
    row = await svc.db.requeue_running(job["id"], job["run_seq"], error)
    if row is None:
        return
    defer = None
    if reason != "shutdown":
        defer = RETRY_BACKOFF[min(job["attempts"], len(RETRY_BACKOFF)) - 1]
    await lifecycle.enqueue(svc, row, defer=defer)
    log.info("job.requeued", job_id=job["id"], backend=job["backend"], reason=reason,
             defer=defer)
    await lifecycle.publish(svc, job["id"], "queued")


async def _pause_flow(svc: Services, job: Row, exc: LoginRequired) -> str:
    account = job.get("flow_account") or svc.settings.flow_account
    await alerts.flow_login_required(svc, account, job_id=job["id"], detail=exc.message)
    if await svc.db.pause_job(job["id"], job["run_seq"], "flow_needs_auth") is not None:
        log.info("job.paused", job_id=job["id"], backend="flow", account=account,
                 reason="flow_needs_auth")
        await lifecycle.publish(svc, job["id"], "paused")
    for other in await svc.db.pause_queued_flow(account):
        log.info("job.paused", job_id=other, backend="flow", account=account,
                 reason="flow_needs_auth")
        await lifecycle.publish(svc, other, "paused")
    return "paused"


async def _alert_exhausted(svc: Services, job: Row) -> None:
    await alerts.send_once(svc, "api_keys_exhausted", job["user_id"], {
        "kind": "api_keys_exhausted", "job_id": job["id"],
        "message": "every usable Gemini key is cooling down; API jobs are paused"})
