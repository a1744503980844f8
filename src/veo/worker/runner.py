"""``run_job``: one run of one job, read top to bottom.

hold the arq mark → check the backend is free to work → claim (guarded) → heartbeat beside the
work → the clips (in order when chained, a few at once otherwise) → the final video → finish.
Every change of the job's status is asked of ``veo.lifecycle``; what happens after an error is
``veo.jobs.after_error``'s decision. A failed heartbeat query is retried; only a definite "not
yours" (a cancel, or the reconciler gave the job to a newer run) stops the work, and then it
writes nothing more. A worker that is shutting down hands its runs back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from veo import logs, queue
from veo.db import RunLost
from veo.errors import GenerationFailed, VeoError
from veo.jobs import error_info
from veo.records import Clip, Job
from veo.services import Services
from veo.worker import film
from veo.worker.context import Backend, ClipRun, Ctx, Frame, count_clip

log = logs.get_logger("veo.worker")


# Runs between their pick-up and their first remote wait, at once. arq hands a worker every
# queued job it can take (up to MAX_JOBS) in one poll; started all together, their few dozen
# queries each interleave and the first of them reaches Google only after the last has done its
# setup (about a second for a backlog of 100). Admitted a few at a time, in queue order, the
# first runs spend their keys at once and the rest follow in order.
STARTING_AT_ONCE = 4


class Admission:
    """One run's place among the starting runs, left at its first remote wait or at its end."""

    def __init__(self, gate: asyncio.Semaphore) -> None:
        self.gate = gate
        self.held = False

    async def __aenter__(self) -> Admission:
        await self.gate.acquire()
        self.held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.leave()

    def leave(self) -> None:
        if self.held:
            self.held = False
            self.gate.release()


class _Lost(Exception):
    """The job is no longer this run's (canceled, or re-queued by the reconciler)."""


@contextlib.asynccontextmanager
async def _holding(svc: Services, arq_id: str) -> AsyncIterator[None]:
    """Keep arq's in-progress mark on this run short and alive (see ``queue.hold``)."""

    async def renew() -> None:
        while True:
            with contextlib.suppress(Exception):  # Redis may be restarting; PG is the record
                await queue.hold(svc.redis, arq_id)
            await asyncio.sleep(queue.IN_PROGRESS_LEASE_MS / 3000)

    task = asyncio.get_running_loop().create_task(renew(), name=f"hold:{arq_id}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def run_job(ctx: Ctx, job_id: str, run_seq: int) -> str:
    svc = ctx["services"]
    async with _holding(svc, ctx.get("job_id") or f"veo:{job_id}:{run_seq}"):
        job = await svc.db.get_job(job_id)
        if job is None or job.run_seq != run_seq or job.status != "queued":
            return "stale"
        backend = ctx["backends"].get(job.backend)
        if backend is None:
            log.error("job.no_backend", job_id=job_id, backend=job.backend)
            return "stale"
        async with backend.slot(), Admission(ctx["starting"]) as admission:
            reason = await backend.blocked(job)
            if reason is not None:
                await svc.lifecycle.pause(job, reason, found=False)
                return "paused"
            claimed = await _claim(svc, job_id, run_seq, ctx["worker_id"])
            if claimed is None:
                return "stale"
            return await Run(svc, backend, claimed, admission.leave).execute()


async def _claim(svc: Services, job_id: str, run_seq: int, worker_id: str) -> Job | None:
    """Claim the job. A worker stopping meanwhile lets the claim land and hands the run back,
    as it does with a run under way, rather than leave it ``running`` for the reconciler."""
    claim = asyncio.ensure_future(svc.lifecycle.claim(job_id, run_seq, worker_id))
    try:
        return await asyncio.shield(claim)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            claimed = await claim
            if claimed is not None:
                await svc.lifecycle.requeue(claimed, None, reason="shutdown")
        raise


class Run:
    """One claimed run of a job."""

    def __init__(self, svc: Services, backend: Backend, job: Job,
                 started: Callable[[], None] = lambda: None) -> None:
        self.svc = svc
        self.backend = backend
        self.job = job
        self.started = started

    async def execute(self) -> str:
        life, job = self.svc.lifecycle, self.job
        work = asyncio.create_task(self._work(), name=f"work:{job.id}")
        lost = asyncio.Event()
        beater = asyncio.create_task(self._beat(work, lost), name=f"beat:{job.id}")
        try:
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                if lost.is_set():
                    raise _Lost() from None
                # the worker itself is stopping: hand the run back before going
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                await asyncio.shield(life.requeue(job, None, reason="shutdown"))
                raise
            await life.finish(job, "succeeded")
            return "succeeded"
        except (_Lost, RunLost):
            log.info("job.released", job_id=job.id, backend=job.backend)
            return "released"
        except VeoError as exc:
            return await life.handle_error(job, exc)
        except Exception as exc:
            log.exception("job.crashed", job_id=job.id, backend=job.backend)
            return await life.handle_error(job, exc)
        finally:
            beater.cancel()
            with contextlib.suppress(BaseException):
                await beater

    async def _beat(self, work: asyncio.Task[None], lost: asyncio.Event) -> None:
        db, job = self.svc.db, self.job
        while not work.done():
            await asyncio.sleep(self.svc.settings.heartbeat_seconds)
            try:
                mine = await db.heartbeat(job.id, job.run_seq)
            except Exception as exc:
                # a blip is not a loss: the reconciler waits stale_after_seconds before it acts
                log.warning("job.heartbeat_failed", job_id=job.id, error=type(exc).__name__)
                continue
            if not mine:
                lost.set()
                work.cancel()
                return

    async def _work(self) -> None:
        db, job = self.svc.db, self.job
        clips = await db.clips_of_job(job.id)
        progress_of = {c.idx: (100 if c.status == "succeeded" else c.progress) for c in clips}
        todo = [c for c in clips if c.status != "succeeded"]
        if job.continuity == "chain":
            for clip in todo:
                chained = None
                if clip.idx > 0:
                    chained = await film.chain_frame(db, self.svc.storage, job, clip.idx - 1)
                await self._clip(clip, len(clips), progress_of, chained)
        else:
            await self._concurrently(todo, len(clips), progress_of)
        final = await db.get_final(job.id)
        if final is not None and final.status != "succeeded":
            await film.build_final(db, self.svc.storage, self.svc.redis, job)

    async def _concurrently(self, todo: list[Clip], total: int,
                            progress_of: dict[int, int]) -> None:
        if not todo:  # every clip is done (a final rebuild, or a rerun after the clips)
            return
        gate = asyncio.Semaphore(max(1, self.backend.clip_concurrency))

        async def one(clip: Clip) -> None:
            async with gate:
                await self._clip(clip, total, progress_of, None)

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
                if t.done() and not t.cancelled() and (exc := t.exception()) is not None:
                    raise exc
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _clip(self, clip: Clip, total: int, progress_of: dict[int, int],
                    chained: Frame | None) -> None:
        db, job = self.svc.db, self.job
        if not await db.start_clip(job.id, job.run_seq, clip.idx):
            raise RunLost(job.id)
        run = ClipRun(db=db, storage=self.svc.storage, redis=self.svc.redis, job=job,
                      clip=clip, clips_total=total, progress_of=progress_of,
                      chained_frame=chained, started=self.started)
        try:
            await self.backend.run_clip(run)
            await run.finish_redo()
        except GenerationFailed as exc:
            final = not exc.retryable
            await db.set_clip(job.id, job.run_seq, clip.idx, "failed" if final else "queued",
                              error_info(exc) if final else None,
                              progress_of.get(clip.idx, 0))
            if final:
                count_clip(job.backend, "failed")
            raise
        except BaseException:
            await asyncio.shield(db.set_clip(job.id, job.run_seq, clip.idx, "queued", None,
                                             progress_of.get(clip.idx, 0)))
            raise
        progress_of[clip.idx] = 100
        if not await db.set_clip(job.id, job.run_seq, clip.idx, "succeeded", None, 100):
            raise RunLost(job.id)
        count_clip(job.backend, "succeeded")

