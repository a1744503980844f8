"""The reconciler: PostgreSQL is the record, Redis may forget. One worker at a time (advisory
lock) re-enqueues queued jobs arq lost, takes back jobs whose worker stopped beating, fails jobs
past their timeout, and resumes API jobs whose keys cooled off."""

from __future__ import annotations

import asyncio

from veo import db as dbmod
from veo import keys, lifecycle, logs
from veo.services import Services

log = logs.get_logger("veo.reconciler")


async def _arq_knows(svc: Services, job_id: str, run_seq: int) -> bool:
    arq_id = keys.arq_job_id(job_id, run_seq)
    return bool(await svc.redis.exists(f"arq:job:{arq_id}", f"arq:in-progress:{arq_id}"))


async def reconcile_once(svc: Services) -> dict[str, int]:
    counts = {"requeued": 0, "orphans": 0, "timed_out": 0, "resumed": 0}
    async with svc.db.pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", dbmod.RECONCILER_LOCK):
            return counts
        try:
            s = svc.settings
            for row in await svc.db.requeue_orphans(s.stale_after_seconds):
                await lifecycle.enqueue(svc, row)
                counts["orphans"] += 1
                log.warning("reconciler.requeued", job_id=row["id"], reason="worker_lost")
            for row in await svc.db.fail_overdue(s.api_job_timeout, s.flow_job_timeout):
                counts["timed_out"] += 1
                log.warning("job.failed", job_id=row["id"], backend=row["backend"],
                            code="timeout", error=row["error"]["message"])
                await lifecycle.publish(svc, row["id"], "failed")
                await lifecycle.notify_terminal(svc, row)
            for row in await svc.db.queued_jobs():
                if not await _arq_knows(svc, row["id"], row["run_seq"]):
                    await lifecycle.enqueue(svc, row)
                    counts["requeued"] += 1
                    log.info("reconciler.requeued", job_id=row["id"], backend=row["backend"],
                             reason="missing_from_queue")
            counts["resumed"] = await lifecycle.resume_due_api_jobs(svc)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", dbmod.RECONCILER_LOCK)
    return counts


async def run_forever(svc: Services) -> None:
    while True:
        try:
            await reconcile_once(svc)
        except asyncio.CancelledError:
            raise
        except Exception:
            # upkeep must outlive a database or Redis blip; the next round tries again
            log.exception("reconciler.error")
        await asyncio.sleep(svc.settings.reconcile_seconds)
