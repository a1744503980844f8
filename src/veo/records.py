"""The service's records, as the repository returns them: typed, immutable msgspec Structs.

Core types with no I/O. ``veo.db`` builds them from rows; everything else reads their fields
instead of indexing dicts, so a renamed column fails type checking instead of at run time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec


class ErrorInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """Why a job, clip or final failed: ``retryable`` says whether another run may succeed."""

    code: str
    message: str = ""
    retryable: bool = False
    details: Any = None


class Params(msgspec.Struct, frozen=True, omit_defaults=True):
    """The generation parameters a job stores, after defaults were applied."""

    aspect_ratio: str = "16:9"
    resolution: str = "720p"
    duration_seconds: int = 8
    number_of_videos: int = 1
    negative_prompt: str | None = None
    person_generation: str | None = None
    enhance_prompt: bool | None = None


class FinalOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """How the clips of a job are stitched into one video: the request's ``final`` (its
    constraints are enforced when a request is decoded) and what a job stores."""

    transition: Literal["cut", "crossfade"] = "cut"
    crossfade_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=3.0)] = 0.5
    trim_start_frames: Annotated[int, msgspec.Meta(ge=0, le=120)] = 0  # frames off each clip
    trim_end_frames: Annotated[int, msgspec.Meta(ge=0, le=120)] = 0
    loudnorm: bool = False


class User(msgspec.Struct, frozen=True):
    id: str
    name: str
    is_admin: bool
    created_at: datetime


class Upload(msgspec.Struct, frozen=True):
    id: str
    user_id: str
    object_key: str
    content_type: str
    width: int
    height: int
    size: int
    sha256: str
    created_at: datetime


class ApiKey(msgspec.Struct, frozen=True):
    """A stored Gemini key; the secret itself stays encrypted in ``key_enc``."""

    id: str
    user_id: str | None  # None: the operator pool
    label: str | None
    fingerprint: str
    key_enc: str
    last4: str
    status: str
    cooling_until: datetime | None
    cool_streak: int
    last_error: str | None
    last_used_at: datetime | None
    created_at: datetime


class Job(msgspec.Struct, frozen=True):
    id: str
    user_id: str
    status: str
    paused_reason: str | None
    backend: str
    requested_backend: str
    model: str
    params: Params
    webhook_url: str | None
    idempotency_key: str | None
    request_hash: str | None
    progress: int
    flow_account: str | None
    flow_needs_auth: bool
    error: ErrorInfo | None
    attempts: int
    run_seq: int
    worker_id: str | None
    heartbeat_at: datetime | None
    resume_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    continuity: str = "none"
    final_options: FinalOptions | None = None
    queue_position: int | None = None

    @property
    def account(self) -> str:
        return self.flow_account or "default"


class Clip(msgspec.Struct, frozen=True):
    job_id: str
    idx: int
    prompt: str
    first_frame: str | None
    last_frame: str | None
    status: str
    progress: int
    error: ErrorInfo | None
    reference_images: list[str] = []
    extend_from: str | None = None
    started_at: datetime | None = None
    selected: int = 0
    redo: bool = False


class Output(msgspec.Struct, frozen=True):
    id: str
    job_id: str
    clip: int
    variant: int
    object_key: str
    size: int
    sha256: str
    content_type: str
    created_at: datetime
    poster_key: str | None = None
    duration_seconds: float | None = None


class Generation(msgspec.Struct, frozen=True):
    """A remote generation a clip paid for: an Omni interaction id (or Veo operation name)."""

    job_id: str
    clip: int
    request: int  # the nth request for this clip: variants are numbered request by request
    handle: str
    key_id: str | None
    samples: int
    run_seq: int
    created_at: datetime


class Final(msgspec.Struct, frozen=True):
    job_id: str
    status: str  # pending | running | succeeded | failed
    options: FinalOptions
    object_key: str | None
    poster_key: str | None
    duration_seconds: float | None
    size: int | None
    sha256: str | None
    error: ErrorInfo | None
    started_at: datetime | None
    finished_at: datetime | None
    selection: list[dict[str, Any]] | None = None  # [{clip, variant, sha256}] it was built from


class FlowAccount(msgspec.Struct, frozen=True):
    account: str
    state_etag: str | None = None
    state_updated_at: datetime | None = None
    last_verified_at: datetime | None = None
    needs_auth_since: datetime | None = None
    cooling_until: datetime | None = None
    cool_streak: int = 0
    canary: dict[str, Any] | None = None


class OutboxItem(msgspec.Struct, frozen=True):
    id: str
    kind: str  # webhook | alert
    job_id: str | None
    url: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_at: datetime
    last_error: str | None
    created_at: datetime


class QueueCounts(msgspec.Struct, frozen=True):
    pending: int
    processing: int
    failed: int
    waiting_auth: int
