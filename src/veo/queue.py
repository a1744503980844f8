"""The arq queue, seen from the service: enqueue one run of a job, and ask whether arq still
holds it. Redis is only the queue: PostgreSQL has the record, and the reconciler re-enqueues
whatever Redis lost.

arq's ``enqueue_job`` takes three round trips (WATCH, EXISTS, MULTI/EXEC); ``enqueue`` writes
the same keys in one atomic script and, like arq, refuses an id whose job or result key exists,
so enqueueing the same run twice is a no-op.
"""

from __future__ import annotations

import time
from typing import Any

from arq.connections import ArqRedis
from arq.constants import result_key_prefix
from arq.jobs import serialize_job

from veo import names
from veo.records import Job

RUN_JOB = "run_job"

_ENQUEUE = """
if redis.call('exists', KEYS[1], KEYS[2]) == 0 then
  redis.call('psetex', KEYS[1], ARGV[1], ARGV[2])
  redis.call('zadd', KEYS[3], ARGV[3], ARGV[4])
  return 1
end
return 0
"""
_JOB_TTL_MS = 86_400_000  # arq's expires_extra_ms: a job not started within a day expires

# arq marks a job it picked up "in progress" for its longest timeout + 10 s (a day here), and
# nobody else may start it meanwhile. A worker that dies right after picking a job would strand
# it that long, so a run shortens the mark to this lease at once and renews it while it lives.
IN_PROGRESS_LEASE_MS = 10_000


def queue_of(job: Job) -> str:
    return names.flow_queue(job.account) if job.backend == "flow" else names.API_QUEUE


async def enqueue(redis: ArqRedis, job: Job, *, defer: float | None = None) -> bool:
    """Queue one run of a job. The arq id includes the run number, so repeating it is a no-op.
    Returns False when arq already has that run."""
    arq_id = names.arq_job_id(job.id, job.run_seq)
    now_ms = int(time.time() * 1000)
    score = now_ms + int((defer or 0) * 1000)
    payload = serialize_job(RUN_JOB, (job.id, job.run_seq), {}, None, now_ms)
    ttl = str(_JOB_TTL_MS + score - now_ms)
    script: Any = redis.eval  # redis-py types eval's arguments as str only
    added = await script(_ENQUEUE, 3, names.ARQ_JOB_PREFIX + arq_id,
                         result_key_prefix + arq_id, queue_of(job), ttl, payload, str(score),
                         arq_id)
    return bool(added)


async def knows(redis: ArqRedis, job: Job) -> bool:
    """Whether arq still has this run (waiting or taken by a worker)."""
    arq_id = names.arq_job_id(job.id, job.run_seq)
    return bool(await redis.exists(names.ARQ_JOB_PREFIX + arq_id,
                                   names.ARQ_IN_PROGRESS_PREFIX + arq_id))


async def hold(redis: ArqRedis, arq_id: str) -> None:
    """Keep (or first shorten) this process's in-progress mark on a run it is working on."""
    await redis.pexpire(names.ARQ_IN_PROGRESS_PREFIX + arq_id, IN_PROGRESS_LEASE_MS)


async def free_stranded(redis: ArqRedis, job: Job) -> bool:
    """A queued run whose in-progress mark was never shortened by a live run was taken by a
    worker that died before starting it: let the mark lapse so another worker picks it up."""
    key = names.ARQ_IN_PROGRESS_PREFIX + names.arq_job_id(job.id, job.run_seq)
    ttl = int(await redis.pttl(key))
    if ttl > 2 * IN_PROGRESS_LEASE_MS:
        await redis.pexpire(key, 1)
        return True
    return False
