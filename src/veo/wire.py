"""The wire types of the HTTP API: every request and response body as msgspec Structs. The web
app renders them, the OpenAPI document is built from them, and `veo.client` decodes with them,
so server and client share one definition."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from veo.catalog import Capabilities
from veo.jobs import (
    SOME_TEXT,
    TEXT,
    ClipSpec,
    FinalSpec,
    JobRequest,
    Prompt,
    whole,
)
from veo.keypool import MAX_KEY, MIN_KEY

__all__ = [
    "ApiError", "Canary", "ClipOut", "ClipSpec", "ErrorBody", "FinalOut", "FinalSpec",
    "FlowAuthStatus", "Health", "JobError", "JobList", "JobOut", "JobRequest", "KeyIn",
    "KeyList", "KeyOut", "LinkOut", "Me", "ModelList", "ModelOut", "OutputOut", "QueueStatus",
    "RedoIn", "Revoked", "SelectIn", "StorageState", "TokenOut", "UploadOut", "UserIn",
    "UserOut",
]

# Ids as the service makes them (``db.new_id``: a prefix and 24 hex digits). The document puts
# these on the path parameters; an id of another shape names nothing, so the routes answer 404.
JOB_ID = r"job_[0-9a-f]{24}"
KEY_ID = r"key_[0-9a-f]{24}"
USER_ID = r"usr_(?:[0-9a-f]{24}|bootstrap_admin)"  # the bootstrap admin's row has a fixed id
OUTPUT_ID = r"out_[0-9a-f]{24}"
ACCOUNT = r"[A-Za-z0-9_-]{1,64}"  # a Flow account's name: it is part of an object key


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
    selected: bool  # the variant the final uses (variant 0 until the user picks)
    poster_url: str | None  # a JPEG frame of the video
    duration_seconds: float | None


class ClipOut(msgspec.Struct):
    index: int
    prompt: str
    status: str
    progress: int
    first_frame: str | None
    last_frame: str | None
    reference_images: list[str]
    extend_from: str | None
    selected: int
    outputs: list[OutputOut]
    error: JobError | None


class FinalOut(msgspec.Struct):
    """The stitched video of a job: pending until every clip succeeded, then running,
    succeeded or failed. ``stale``: built from variants that are no longer the selected ones
    (a pick or a redo since): rebuild it to catch up."""

    status: str
    transition: str
    crossfade_seconds: float
    trim_start_frames: int
    trim_end_frames: int
    loudnorm: bool
    stale: bool = False
    url: str | None = None
    poster_url: str | None = None
    duration_seconds: float | None = None
    size: int | None = None
    sha256: str | None = None
    error: JobError | None = None


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
    continuity: str
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
    final: FinalOut | None


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
    # keys are opaque (AIza…, AQ.…, whatever Google issues next) but travel in an HTTP header:
    # printable ASCII without spaces
    key: Annotated[str, whole(rf"[!-~]{{{MIN_KEY},{MAX_KEY}}}", min_length=MIN_KEY,
                              max_length=MAX_KEY, description="a Gemini API key")]
    label: Annotated[str, whole(TEXT, max_length=200)] | None = None


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
    name: Annotated[str, whole(SOME_TEXT, min_length=1, max_length=200,
                               description="stored without surrounding whitespace")]
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
    usable_keys: int  # the caller's keys and the operator pool's, not invalid
    auto_backend: str | None  # where `backend: "auto"` sends the caller's default job now


class LinkOut(msgspec.Struct):
    """A short-lived URL that needs no token (for a <video> element or a download)."""

    url: str
    expires_at: datetime


class ApiBackendHealth(msgspec.Struct):
    enabled: bool
    available_keys: int


class Canary(msgspec.Struct, omit_defaults=True):
    """The last walk of the Flow UI up to (never including) the submit."""

    ok: bool
    at: datetime
    step: str | None = None  # where it stopped, when it failed
    fallback_used: list[str] = msgspec.field(default_factory=list)  # steps found by a fallback


class FlowBackendHealth(msgspec.Struct):
    enabled: bool
    auth_configured: bool
    queue_configured: bool
    needs_auth: bool
    account: str
    cooling_until: datetime | None = None
    driver: str | None = None  # the worker holding the account's lease
    canary: Canary | None = None


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


class SelectIn(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /api/jobs/{id}/clips/{index}/select``."""

    # any index PostgreSQL can compare (an int4 column); one the clip does not have is a 404
    variant: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1,
                                         description="a variant's index, from 0")]


class RedoIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Body of ``POST /api/jobs/{id}/clips/{index}/redo``: a new prompt, or the old one."""

    prompt: Prompt | None = None


class ModelOut(msgspec.Struct):
    """A catalog entry; ``capabilities`` per backend that runs the model."""

    id: str
    description: str
    protocol: str
    backends: list[str]
    aliases: list[str]
    flow_label: str | None
    capabilities: dict[str, Capabilities]
    shutdown_date: str | None
    replacement: str | None
    retired: bool
    default: bool


class ModelList(msgspec.Struct):
    data: list[ModelOut]
    default: str


class TokenOut(msgspec.Struct):
    user_id: str
    token: str  # shown once


class Revoked(msgspec.Struct):
    user_id: str
    revoked: int


class Cookie(msgspec.Struct):
    """A cookie as Playwright's ``storage_state()`` writes it; fields it may add later pass."""

    name: str
    value: str
    domain: str
    path: str = "/"
    expires: float = -1  # unix seconds; -1 for a session cookie
    httpOnly: bool = False
    secure: bool = False
    sameSite: Literal["Strict", "Lax", "None"] = "Lax"


class StorageItem(msgspec.Struct):
    name: str
    value: str


class OriginState(msgspec.Struct):
    origin: str
    localStorage: list[StorageItem]


class StorageState(msgspec.Struct):
    """Body of ``POST /api/admin/flow/auth``: Playwright's storage state, as ``veo-auth export``
    writes it."""

    cookies: list[Cookie]
    origins: list[OriginState] = []
