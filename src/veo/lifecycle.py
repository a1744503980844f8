"""The one owner of job state: every change of a job's status goes through here, and so do its
side effects (the log event, the metrics, the SSE notice, the enqueue, the webhook and the
operator alert), in ``_changed`` and ``_queue``.

The web app, the worker's runner and reconciler, and the CLI call these use cases; the rules
they apply are the pure functions of ``veo.jobs``; the state is made durable by the guarded
updates of ``veo.db``. Nothing here knows HTTP, arq's internals, ffmpeg or Playwright.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from arq.connections import ArqRedis

from veo import alerts, events, jobs, logs, metrics, names, queue, webhooks
from veo.catalog import Catalog
from veo.config import Settings
from veo.crypto import Box
from veo.db import Db
from veo.errors import Conflict, InvalidRequest, NotFound
from veo.records import Clip, ErrorInfo, FinalOptions, Job, User
from veo.storage import Storage

log = logs.get_logger("veo.lifecycle")


class Lifecycle:
    def __init__(self, db: Db, redis: ArqRedis, storage: Storage, settings: Settings,
                 catalog: Catalog, box: Box) -> None:
        self.db = db
        self.redis = redis
        self.storage = storage
        self.settings = settings
        self.catalog = catalog
        self.box = box

    # ---- side effects, in one place ---------------------------------------------------------

    async def _changed(self, job: Job, event: str | None = None, *, warn: bool = False,
                       **fields: Any) -> None:
        """Tell the world that ``job`` (as it is now) changed."""
        if event is not None:
            ctx: dict[str, Any] = {"job_id": job.id, "backend": job.backend, **fields}
            if job.backend == "flow":
                ctx.setdefault("account", job.account)
            if job.error is not None and job.status == "failed":
                ctx.setdefault("code", job.error.code)
                ctx.setdefault("error", job.error.message)
            (log.warning if warn else log.info)(event, **ctx)
        metrics.JOBS.labels(job.backend, job.status).inc()
        await events.publish(self.redis, job.id, job.status, job.progress)
        if job.status in jobs.TERMINAL:
            if job.started_at is not None and job.finished_at is not None:
                metrics.JOB_SECONDS.labels(job.backend, job.status).observe(
                    (job.finished_at - job.started_at).total_seconds())
            if job.webhook_url:
                outputs = await self.db.outputs_of_job(job.id)
                final = await self.db.get_final(job.id)
                await self.db.add_outbox(
                    f"evt_{job.id}_{job.status}_{job.run_seq}", "webhook",
                    webhooks.payload(job, outputs, final), job_id=job.id, url=job.webhook_url)

    async def _queue(self, job: Job, *, defer: float | None = None) -> None:
        """Hand a queued run to arq. Redis may be down: the row is the record, and the
        reconciler enqueues what is missing once it is back."""
        try:
            await queue.enqueue(self.redis, job, defer=defer)
        except Exception as exc:
            log.warning("queue.enqueue_failed", job_id=job.id, error=type(exc).__name__)

    # ---- creating and reading ---------------------------------------------------------------

    async def create(self, user: User, req: jobs.JobRequest, *, idempotency_key: str | None,
                     body_hash: str, has_usable_key: bool | None = None) -> tuple[Job, bool]:
        """Validate, route, record, then enqueue. Returns (job, created)."""
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 255:
                raise InvalidRequest("Idempotency-Key: 1 to 255 characters",
                                     details={"field": "Idempotency-Key"})
            existing = await self.db.job_by_idempotency(user.id, idempotency_key)
            if existing is not None:
                return _replay(existing, body_hash), False
        valid = jobs.validate(req, self.catalog, self.settings.default_model, _today())
        await self._check_references(user, valid)
        if valid.webhook_url:
            await webhooks.check_url(valid.webhook_url,
                                     allow_private=self.settings.webhook_allow_private)
        if has_usable_key is None:
            has_usable_key = valid.requested_backend != "flow" and \
                (await self.db.key_stats(user.id))[0] > 0
        backend = jobs.choose_backend(valid.requested_backend, valid.model,
                                      has_usable_key=has_usable_key,
                                      flow_enabled=self.settings.flow_enabled)
        params = jobs.check_capabilities(valid, backend)
        try:
            job = await self.db.create_job(
                user_id=user.id, backend=backend, requested_backend=valid.requested_backend,
                model=valid.model.id, params=params, webhook_url=valid.webhook_url,
                idempotency_key=idempotency_key, request_hash=body_hash,
                flow_account=self.settings.flow_account if backend == "flow" else None,
                continuity=valid.continuity, final_options=valid.final, clips=valid.clips)
        except Conflict:
            assert idempotency_key is not None
            existing = await self.db.job_by_idempotency(user.id, idempotency_key)
            if existing is None:
                raise
            return _replay(existing, body_hash), False
        await self._changed(job, "job.created", model=job.model, clips=len(valid.clips),
                            user_id=user.id)
        await self._queue(job)
        return job, True

    async def _check_references(self, user: User, valid: jobs.ValidJob) -> None:
        wanted = {u for c in valid.clips
                  for u in (c.first_frame, c.last_frame, *(c.reference_images or [])) if u}
        found = await self.db.uploads_by_ids(sorted(wanted), user.id) if wanted else {}
        for i, clip in enumerate(valid.clips):
            for field in ("first_frame", "last_frame"):
                upload_id = getattr(clip, field)
                if upload_id and upload_id not in found:
                    # a well-formed id naming nothing of the caller's: 404, as for ids in paths
                    raise NotFound(f"clips[{i}].{field}: no upload {upload_id!r}",
                                   details={"field": f"clips[{i}].{field}"})
            for upload_id in clip.reference_images or []:
                if upload_id not in found:
                    raise NotFound(f"clips[{i}].reference_images: no upload {upload_id!r}",
                                   details={"field": f"clips[{i}].reference_images"})
            if clip.extend_from:
                out = await self.db.output_of_user(clip.extend_from, user.id)
                if out is None:
                    raise NotFound(f"clips[{i}].extend_from: no output {clip.extend_from!r}",
                                   details={"field": f"clips[{i}].extend_from"})
                limit = valid.model.max_extended_seconds
                if limit and (out.duration_seconds or 0) >= limit:
                    raise InvalidRequest(
                        f"clips[{i}].extend_from: {valid.model.id} extends videos up to "
                        f"{limit} s in all; this one is already {out.duration_seconds:.0f} s",
                        details={"field": f"clips[{i}].extend_from"})

    async def owned(self, user: User, job_id: str) -> Job:
        job = await self.db.get_job(job_id)
        if job is None or job.user_id != user.id:
            raise NotFound(f"no job {job_id!r}")
        return job

    # ---- what users do to jobs --------------------------------------------------------------

    async def cancel(self, job: Job) -> Job:
        if job.status not in jobs.CANCELABLE:
            raise Conflict(f"a {job.status} job cannot be canceled", code="not_cancelable")
        row = await self.db.cancel_job(job.id)
        if row is None:
            raise Conflict("the job finished before it could be canceled", code="not_cancelable")
        await self._changed(row, "job.canceled")
        return row

    async def retry(self, job: Job) -> Job:
        if job.status not in jobs.RETRYABLE:
            raise Conflict(f"only failed or canceled jobs can be retried, this one is "
                           f"{job.status}", code="not_retryable")
        row = await self.db.retry_job(job.id)
        if row is None:
            raise Conflict("the job changed state; try again", code="not_retryable")
        await self._changed(row, "job.resumed", reason="retry")
        await self._queue(row)
        return row

    async def delete(self, job: Job) -> None:
        if job.status == jobs.JobStatus.RUNNING:
            raise Conflict("cancel the running job before deleting it", code="job_running")
        # objects first: if storage fails the row stays and the delete can be repeated
        for prefix in (names.outputs_prefix(job.id), names.debug_prefix(job.id),
                       names.staging_prefix(job.id)):
            await self.storage.delete_prefix(prefix)
        if not await self.db.delete_job(job.id):
            raise Conflict("the job started running; cancel it first", code="job_running")
        log.info("job.deleted", job_id=job.id)

    async def select(self, job: Job, idx: int, variant: int) -> Clip:
        clip = await self.db.select_variant(job.id, idx, variant)
        if clip is None:
            raise NotFound(f"clip {idx} of job {job.id} has no variant {variant}")
        log.info("clip.selected", job_id=job.id, clip=idx, variant=variant)
        await events.publish(self.redis, job.id, job.status, job.progress)
        return clip

    async def redo(self, job: Job, idx: int, prompt: str | None) -> Job:
        if job.status not in jobs.REWORKABLE:
            raise Conflict(f"a {job.status} job is still at work; redo a clip once it ended",
                           code="job_active")
        if not 0 <= idx < len(await self.db.clips_of_job(job.id)):
            raise NotFound(f"job {job.id} has no clip {idx}")
        if prompt is not None and not 1 <= len(prompt.strip()) <= jobs.MAX_PROMPT_CHARS:
            raise InvalidRequest(f"prompt: 1 to {jobs.MAX_PROMPT_CHARS} characters",
                                 details={"field": "prompt"})
        row = await self.db.redo_clip(job.id, idx, prompt)
        if row is None:
            raise Conflict("the job changed state; try again", code="job_active")
        await self._changed(row, "job.resumed", reason="redo", clip=idx)
        await self._queue(row)
        return row

    async def rebuild_final(self, job: Job, options: FinalOptions) -> Job:
        if job.status not in jobs.REWORKABLE:
            raise Conflict(f"a {job.status} job is still at work; the final is built when it "
                           "ends", code="job_active")
        clips = await self.db.clips_of_job(job.id)
        if any(c.status != "succeeded" for c in clips):
            raise Conflict("every clip must have succeeded before a final can be built",
                           code="clips_unfinished")
        row = await self.db.rebuild_final(job.id, options)
        if row is None:
            raise Conflict("the job changed state; try again", code="job_active")
        await self._changed(row, "job.resumed", reason="final")
        await self._queue(row)
        return row

    async def retry_failed_flow(self, account: str | None = None) -> int:
        rows = await self.db.retry_failed_flow(account)
        for row in rows:
            await self._changed(row, "job.resumed", reason="retry_failed")
            await self._queue(row)
        return len(rows)

    # ---- what a run does to its job -----------------------------------------------------------

    async def claim(self, job_id: str, run_seq: int, worker_id: str) -> Job | None:
        job = await self.db.claim_job(job_id, run_seq, worker_id)
        if job is not None:
            await self._changed(job, "job.claimed", attempt=job.attempts)
        return job

    async def finish(self, job: Job, status: str, error: ErrorInfo | None = None) -> bool:
        row = await self.db.finish_job(job.id, job.run_seq, status, error)
        if row is None:
            return False
        if status == "succeeded" and row.backend == "api":
            # a key worked for this user again: a later exhaustion is a new cause, worth an alert
            await alerts.clear(self.db, alerts.KEYS_EXHAUSTED, row.user_id)
        await self._changed(row, "job.succeeded" if status == "succeeded" else "job.failed",
                            warn=status != "succeeded", attempt=row.attempts)
        return True

    async def requeue(self, job: Job, error: ErrorInfo | None, *, reason: str,
                      defer: float | None = None) -> bool:
        # a worker that stops hands its runs back: no fault of the job's, no attempt spent
        row = await self.db.requeue_running(job.id, job.run_seq, error,
                                            refund=reason == "shutdown")
        if row is None:
            return False
        await self._changed(row, "job.requeued", reason=reason, defer=defer)
        await self._queue(row, defer=defer)
        return True

    async def pause(self, job: Job, reason: str, *, until: float | None = None,
                    detail: str | None = None, found: bool = True) -> bool:
        """Pause a queued or running job; no try is spent. ``found``: this job ran into the
        cause (the account or the key pool follows); else it only met a cause already known
        (a Flow account already resting or waiting for a login) and just waits with it."""
        resume_at = datetime.fromtimestamp(until, UTC) if until else None
        if reason == jobs.PausedReason.FLOW_NEEDS_AUTH and found:
            await self.login_required(job.account, job_id=job.id, detail=detail or "")
        elif reason == jobs.PausedReason.FLOW_RATE_LIMITED:
            if found:
                resume_at = await self.cool_account(job.account, job_id=job.id,
                                                    detail=detail or "")
            else:
                acct = await self.db.flow_account(job.account)
                resume_at = acct.cooling_until if acct else None
        row = await self.db.pause_job(job.id, job.run_seq, reason, resume_at)
        if row is not None:
            await self._changed(row, "job.paused", reason=reason,
                                resume_at=resume_at.isoformat() if resume_at else None)
        if reason == jobs.PausedReason.API_KEYS_EXHAUSTED and row is not None and found:
            await alerts.raise_alert(self.db, alerts.KEYS_EXHAUSTED, job.user_id, {
                "job_id": job.id,
                "message": "every usable Gemini key is cooling down; API jobs are paused"})
        return row is not None

    async def handle_error(self, job: Job, exc: BaseException) -> str:
        """Apply the failure policy to a run that raised; returns what became of the job."""
        decision = jobs.after_error(exc, attempts=job.attempts,
                                    max_attempts=self.settings.max_attempts)
        if isinstance(decision, jobs.Pause):
            await self.pause(job, decision.reason, until=decision.until, detail=str(exc))
            return "paused"
        if isinstance(decision, jobs.Retry):
            await self.requeue(job, decision.error, reason=decision.error.code,
                               defer=decision.defer)
            return "retrying"
        await self.finish(job, "failed", decision.error)
        return "failed"

    # ---- Flow accounts ------------------------------------------------------------------------

    async def flow_paused(self, account: str) -> bool:
        return bool(await self.redis.exists(names.flow_paused_flag(account)))

    async def login_required(self, account: str, *, job_id: str | None, detail: str) -> None:
        """Stop the account's Flow work until a new login arrives: flag, record, pause every
        queued job of the account, log once, alert once."""
        first = await self.redis.set(names.flow_paused_flag(account), "1", nx=True)
        await self.db.flow_needs_auth(account)
        if first:
            log.warning("flow.login_required", account=account, job_id=job_id, detail=detail)
        for row in await self.db.pause_queued_flow(account, jobs.PausedReason.FLOW_NEEDS_AUTH):
            await self._changed(row, "job.paused", reason=jobs.PausedReason.FLOW_NEEDS_AUTH)
        await alerts.raise_alert(self.db, alerts.FLOW_LOGIN, account, {
            "account": account, "job_id": job_id,
            "message": f"Flow needs a new login for account {account!r}: run "
                       "`veo-auth export --upload` or POST /api/admin/flow/auth"})

    async def cool_account(self, account: str, *, job_id: str | None,
                           detail: str) -> datetime | None:
        """Rest the account after a rate-limit or unusual-activity answer (growing back-off);
        its queued jobs wait with it. Returns when it may work again."""
        row = await self.db.cool_account(account, self.settings.flow_cooldown_seconds,
                                         self.settings.flow_cooldown_max_seconds)
        until = row.cooling_until
        log.warning("flow.account_cooling", account=account, job_id=job_id,
                    until=until.isoformat() if until else None, streak=row.cool_streak,
                    detail=detail)
        for other in await self.db.pause_queued_flow(
                account, jobs.PausedReason.FLOW_RATE_LIMITED, until):
            await self._changed(other, "job.paused", reason=jobs.PausedReason.FLOW_RATE_LIMITED)
        await alerts.raise_alert(self.db, alerts.FLOW_COOLING, account, {
            "account": account, "job_id": job_id,
            "until": until.isoformat() if until else None,
            "message": f"Flow account {account!r} answered '{detail[:200]}'; it rests until "
                       f"{until} and its jobs wait"})
        return until

    async def resume_flow(self, account: str, reason: str, *, why: str) -> int:
        """The cause of an account's pause cleared: queue its paused jobs again."""
        if reason == jobs.PausedReason.FLOW_NEEDS_AUTH:
            await self.redis.delete(names.flow_paused_flag(account))
            await self.db.flow_verified(account)
            await alerts.clear(self.db, alerts.FLOW_LOGIN, account)
        else:
            await alerts.clear(self.db, alerts.FLOW_COOLING, account)
        rows = await self.db.resume_flow(account, reason)
        for row in rows:
            await self._changed(row, "job.resumed", reason=why)
            await self._queue(row)
        if rows or reason == jobs.PausedReason.FLOW_NEEDS_AUTH:
            log.info("flow.resumed", account=account, jobs=len(rows), why=why)
        return len(rows)

    # ---- the reconciler's use cases -------------------------------------------------------------

    async def requeue_orphans(self) -> int:
        rows = await self.db.requeue_orphans(self.settings.stale_after_seconds)
        for row in rows:
            metrics.REQUEUED.labels("worker_lost").inc()
            await self._changed(row, "reconciler.requeued", warn=True, reason="worker_lost")
            await self._queue(row)
        return len(rows)

    async def fail_overdue(self) -> int:
        s = self.settings
        rows = await self.db.fail_overdue(s.api_job_timeout, s.flow_job_timeout,
                                          s.final_timeout)
        for row in rows:
            await self._changed(row, "job.failed", warn=True)
        return len(rows)

    async def requeue_lost(self) -> int:
        """Queued runs that Redis no longer has (a flush, a restart without persistence), and
        runs a dead worker took from arq but never claimed."""
        n = 0
        # A live run shortens arq's day-long in-progress mark within moments of taking the run
        # (queue.hold is the first thing run_job does), so a mark still at arq's length a whole
        # reconciler period after the job was queued is a dead worker's. Freeing one too early
        # costs nothing: a second worker takes the run and its guarded claim finds it taken.
        stale = datetime.now(UTC).timestamp() - self.settings.reconcile_seconds
        for row in await self.db.queued_jobs():
            if not await queue.knows(self.redis, row):
                metrics.REQUEUED.labels("missing_from_queue").inc()
                log.info("reconciler.requeued", job_id=row.id, backend=row.backend,
                         reason="missing_from_queue")
                await self._queue(row)
                n += 1
            elif row.updated_at.timestamp() < stale and \
                    await queue.free_stranded(self.redis, row):
                metrics.REQUEUED.labels("stranded").inc()
                log.info("reconciler.requeued", job_id=row.id, backend=row.backend,
                         reason="taken_by_dead_worker")
                n += 1
        return n

    async def resume_due(self) -> int:
        """API jobs whose keys cooled off, Flow accounts that rested."""
        n = 0
        for row in await self.db.resume_api_due():
            await self._changed(row, "job.resumed", reason="key_available")
            await self._queue(row)
            n += 1
        for acct in await self.db.flow_accounts():
            if acct.cooling_until is not None and await self.db.account_rested(acct.account):
                n += await self.resume_flow(acct.account, jobs.PausedReason.FLOW_RATE_LIMITED,
                                            why="account_rested")
        return n


def _replay(existing: Job, body_hash: str) -> Job:
    if existing.request_hash != body_hash:
        raise Conflict("Idempotency-Key was already used with a different request body",
                       code="idempotency_key_reused")
    return existing


def _today() -> date:
    return datetime.now(UTC).date()
