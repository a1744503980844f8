"""Every name the service gives to things outside itself, in one place: object-storage keys and
Redis keys and channels.

Object keys (deterministic, so a rerun overwrites instead of duplicating):
``uploads/{user}/{upload}.{ext}`` · ``outputs/{job}/{clip}-{variant}.mp4`` and ``.jpg`` (poster) ·
``outputs/{job}/final.mp4`` and ``final.jpg`` · ``flow/auth/{account}/storage_state.json`` ·
``debug/{job}/{step}.png|.html``. Staged objects of a run live under ``staging/{job}/{run}/``
until the run, holding its lock, moves them to their final keys.
"""

from __future__ import annotations

import re

from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix

_SAFE = re.compile(r"^[A-Za-z0-9_\-]+$")


def _part(value: str) -> str:
    if not _SAFE.match(value):
        raise ValueError(f"unsafe key part {value!r}")
    return value


# ---- object storage

def upload(user_id: str, upload_id: str, ext: str) -> str:
    return f"uploads/{_part(user_id)}/{_part(upload_id)}.{_part(ext)}"


def output(job_id: str, clip: int, variant: int) -> str:
    return f"outputs/{_part(job_id)}/{clip}-{variant}.mp4"


def poster(job_id: str, clip: int, variant: int) -> str:
    return f"outputs/{_part(job_id)}/{clip}-{variant}.jpg"


def final(job_id: str) -> str:
    return f"outputs/{_part(job_id)}/final.mp4"


def final_poster(job_id: str) -> str:
    return f"outputs/{_part(job_id)}/final.jpg"


def staged(job_id: str, run_seq: int, name: str) -> str:
    """Where a run writes an object before it may own the final key."""
    return f"staging/{_part(job_id)}/{run_seq}/{_part(name.replace('.', '_'))}"


def outputs_prefix(job_id: str) -> str:
    return f"outputs/{_part(job_id)}/"


def staging_prefix(job_id: str) -> str:
    return f"staging/{_part(job_id)}/"


def debug(job_id: str, step: str, ext: str) -> str:
    return f"debug/{_part(job_id)}/{_part(step)}.{_part(ext)}"


def debug_prefix(job_id: str) -> str:
    return f"debug/{_part(job_id)}/"


def flow_state(account: str) -> str:
    return f"flow/auth/{_part(account)}/storage_state.json"


# ---- Redis (arq's own names come from arq, so a version bump cannot split them)

API_QUEUE = default_queue_name
ARQ_JOB_PREFIX = job_key_prefix
ARQ_IN_PROGRESS_PREFIX = in_progress_key_prefix
EVENTS_CHANNEL = "veo:events"  # one channel: each web process subscribes once and fans out


def arq_job_id(job_id: str, run_seq: int) -> str:
    """The arq id of one run of a job: re-enqueueing the same run is a no-op in arq."""
    return f"veo:{job_id}:{run_seq}"


def flow_queue(account: str) -> str:
    """Flow jobs of one account wait in their own queue, read only by that account's driver."""
    return f"arq:queue:flow:{_part(account)}"


def flow_paused_flag(account: str) -> str:
    return f"veo:flow:paused:{_part(account)}"


def flow_lease(account: str) -> str:
    """Held by the one worker that drives this Flow account."""
    return f"veo:flow:lease:{_part(account)}"


def flow_canary_request(account: str) -> str:
    """Set by `veo flow canary`; the lease holder runs the canary and clears it."""
    return f"veo:flow:canary:{_part(account)}"
