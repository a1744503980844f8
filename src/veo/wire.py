"""The wire types of the HTTP API: every request and response body as msgspec Structs. The web
app renders them, the OpenAPI document is built from them, and `veo.client` decodes with them,
so server and client share one definition."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from veo.jobs import JobRequest

__all__ = [
    "ApiError", "ClipOut", "ErrorBody", "FinalOptions", "FinalOut", "FlowAuthStatus", "Health",
    "JobError", "JobList", "JobOut", "JobRequest", "KeyIn", "KeyList", "KeyOut", "Me",
    "ModelList", "ModelOut", "OutputOut", "QueueStatus", "RedoIn", "SelectIn", "UploadOut",
    "UserIn", "UserOut",
]


class ApiError(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    details: Any = None


class ErrorBody(msgspec.Struct):
    error: ApiError


class JobError(msgspec.Struct):
    code: str
    message: str
    retryable: bool
    details: Any = None


class OutputOut(msgspec.Struct):
    id: str
    clip: int
    variant: int
    url: str
    size: int
    sha256: str
    content_type: str
    # ahead of the server (client work): defaults until web/render.py fills them
    selected: bool = False
    poster_url: str | None = None
    duration_seconds: float | None = None


class ClipOut(msgspec.Struct):
    index: int
    prompt: str
    status: str
    progress: int
    first_frame: str | None
    last_frame: str | None
    outputs: list[OutputOut]
    error: JobError | None


class JobUrls(msgspec.Struct):
    get: str
    cancel: str
    events: str


class JobOut(msgspec.Struct):
    id: str
    status: str
    paused_reason: str | None
    backend: str
    requested_backend: str
    model: str
    aspect_ratio: str
    resolution: str
    duration_seconds: int
    number_of_videos: int
    negative_prompt: str | None
    person_generation: str | None
    enhance_prompt: bool | None
    webhook_url: str | None
    progress: int
    queue_position: int | None
    flow_needs_auth: bool
    clips: list[ClipOut]
    outputs: list[OutputOut]
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    urls: JobUrls
    final: FinalOut | None = None  # ahead of the server (client work), see FinalOut


class JobList(msgspec.Struct):
    data: list[JobOut]
    next_cursor: str | None
    has_more: bool


class UploadOut(msgspec.Struct):
    id: str
    content_type: str
    width: int
    height: int
    size: int
    sha256: str


class KeyIn(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    label: str | None = None


class KeyOut(msgspec.Struct):
    id: str
    label: str | None
    masked: str
    status: str
    cooling_until: datetime | None
    last_error: str | None
    created_at: datetime


class KeyList(msgspec.Struct):
    data: list[KeyOut]


class UserIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    is_admin: bool = False


class UserOut(msgspec.Struct):
    id: str
    name: str
    is_admin: bool
    token: str


class Me(msgspec.Struct):
    id: str
    name: str
    is_admin: bool
    webhook_secret: str


class ApiBackendHealth(msgspec.Struct):
    enabled: bool
    available_keys: int


class FlowBackendHealth(msgspec.Struct):
    enabled: bool
    auth_configured: bool
    queue_configured: bool
    needs_auth: bool
    account: str


class Backends(msgspec.Struct):
    api: ApiBackendHealth
    flow: FlowBackendHealth


class Health(msgspec.Struct):
    status: str
    backends: Backends
    checks: dict[str, str]


class QueueStatus(msgspec.Struct):
    pending: int
    processing: int
    failed: int
    paused: bool
    waiting_auth: int


class FlowAuthStatus(msgspec.Struct):
    configured: bool
    account: str
    last_verified_at: datetime | None
    needs_auth: bool
    needs_auth_since: datetime | None
    state_updated_at: datetime | None
    cookies: int


class RetryFailed(msgspec.Struct):
    requeued: int


# ---- ahead of the server -----------------------------------------------------------------------
# Added with veo.client so it can type the routes and fields the server is gaining (select, redo,
# final, posters, models). The web layer is to adopt these (or replace them, keeping the names).


class FinalOptions(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``final`` in a job request, and the body of ``POST /api/jobs/{id}/final``."""

    transition: Literal["cut", "crossfade"] = "cut"
    crossfade_seconds: float | None = None
    trim_start_frames: int | None = None
    trim_end_frames: int | None = None
    loudnorm: bool | None = None


class FinalOut(msgspec.Struct):
    """The stitched video of a job: ``status`` follows the job statuses."""

    status: str
    url: str | None = None
    poster_url: str | None = None
    duration_seconds: float | None = None
    size: int | None = None
    sha256: str | None = None
    error: JobError | None = None


class SelectIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /api/jobs/{id}/clips/{index}/select``."""

    variant: int


class RedoIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Body of ``POST /api/jobs/{id}/clips/{index}/redo``: a new prompt, or the old one."""

    prompt: str | None = None


class ModelOut(msgspec.Struct):
    id: str
    backends: list[str] = msgspec.field(default_factory=list)
    capabilities: dict[str, Any] = msgspec.field(default_factory=dict)
    shutdown_date: str | None = None
    replacement: str | None = None
    default: bool = False


class ModelList(msgspec.Struct):
    data: list[ModelOut]
