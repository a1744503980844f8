"""The reconciler: PostgreSQL is the record, Redis may forget. One worker at a time (an
advisory lock) takes back runs whose worker stopped beating, fails clips past their timeout,
re-enqueues what Redis lost (or what a dead worker took from arq but never started), and
resumes jobs whose pause cause cleared (keys cooled off, a Flow account rested)."""

from __future__ import annotations

import asyncio

from veo import logs
from veo.db import RECONCILER_LOCK
from veo.services import Services

log = logs.get_logger("veo.reconciler")


async def reconcile_once(svc: Services) -> dict[str, int] | None:
    """One round; None when another worker's reconciler holds the lock."""
    life = svc.lifecycle
    async with svc.db.advisory_lock(RECONCILER_LOCK) as mine:
        if not mine:
            return None
        return {"orphans": await life.requeue_orphans(),
                "timed_out": await life.fail_overdue(),
                "requeued": await life.requeue_lost(),
                "resumed": await life.resume_due()}


async def run_forever(svc: Services) -> None:
    while True:
        try:
            await reconcile_once(svc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # upkeep must outlive a database or Redis blip; the next round tries again
            log.warning("reconciler.error", error=type(exc).__name__, detail=str(exc)[:200])
        await asyncio.sleep(svc.settings.reconcile_seconds)
