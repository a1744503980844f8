"""Every object-storage key and Redis key name the service uses, in one place (SPEC §5)."""

from __future__ import annotations

import re

_SAFE = re.compile(r"^[A-Za-z0-9_\-]+$")


def _part(value: str) -> str:
    if not _SAFE.match(value):
        raise ValueError(f"unsafe key part {value!r}")
    return value


def upload(user_id: str, upload_id: str, ext: str) -> str:
    return f"uploads/{_part(user_id)}/{_part(upload_id)}.{_part(ext)}"


def output(job_id: str, clip: int, variant: int) -> str:
    return f"outputs/{_part(job_id)}/{clip}-{variant}.mp4"


def outputs_prefix(job_id: str) -> str:
    return f"outputs/{_part(job_id)}/"


def debug(job_id: str, step: str, ext: str) -> str:
    return f"debug/{_part(job_id)}/{_part(step)}.{_part(ext)}"


def debug_prefix(job_id: str) -> str:
    return f"debug/{_part(job_id)}/"


def flow_state(account: str) -> str:
    return f"flow/auth/{_part(account)}/storage_state.json"


# Redis
ARQ_QUEUE = "arq:queue"
ARQ_JOB_PREFIX = "arq:job:"


def arq_job_id(job_id: str, run_seq: int) -> str:
    """The arq id of one run of a job: re-enqueueing the same run is a no-op in arq."""
    return f"veo:{job_id}:{run_seq}"


def flow_queue(account: str) -> str:
    """Flow jobs of one account wait in their own queue, read only by that account's worker."""
    return f"arq:queue:flow:{_part(account)}"


def flow_paused_flag(account: str) -> str:
    return f"veo:flow:paused:{_part(account)}"


def job_events_channel(job_id: str) -> str:
    return f"veo:events:{job_id}"


def reconciler_lock() -> str:
    return "veo:reconciler"
