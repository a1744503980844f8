"""The job core: statuses and their transitions, request rules, backend routing, and what
happens after an error.

Pure functions and types only: no database, queue, HTTP or browser here. ``veo.lifecycle``
asks these to decide and makes the decisions durable with guarded ``UPDATE … WHERE status = …``
(``sql/queries/jobs.sql``; a test checks every guarded update against ``TRANSITIONS``).
"""

from __future__ import annotations

import enum
import hashlib
from datetime import date
from typing import Annotated, Any, Literal

import msgspec

from veo.catalog import Capabilities, Catalog, Model
from veo.errors import (
    AccountCooling,
    AllKeysCooling,
    InvalidRequest,
    LoginRequired,
    NoUsableKey,
    VeoError,
)
from veo.records import ErrorInfo, FinalOptions, Params


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    PAUSED = "paused"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED})


class PausedReason(enum.StrEnum):
    FLOW_NEEDS_AUTH = "flow_needs_auth"
    API_KEYS_EXHAUSTED = "api_keys_exhausted"
    FLOW_RATE_LIMITED = "flow_rate_limited"


Q, R, S, F, C, P = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED,
                    JobStatus.CANCELED, JobStatus.PAUSED)
# from-status -> statuses it may move to. A finished job goes back to queued for a user retry
# (failed, canceled) or for more work on its results (redo a clip, rebuild the final).
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    Q: frozenset({R, P, C, F}),
    R: frozenset({S, F, C, P, Q}),
    P: frozenset({Q, C, F}),
    S: frozenset({Q}),
    F: frozenset({Q}),
    C: frozenset({Q}),
}

CANCELABLE = frozenset(s for s, to in TRANSITIONS.items() if C in to)
RETRYABLE = frozenset({F, C})
REWORKABLE = frozenset({S, F, C})  # redo a clip, rebuild the final


def can_move(src: str, dst: str) -> bool:
    return JobStatus(dst) in TRANSITIONS[JobStatus(src)]


# ---- requests ---------------------------------------------------------------------------------

Backend = Literal["auto", "api", "flow"]
AspectRatio = Literal["16:9", "9:16"]
Resolution = Literal["360p", "720p", "1080p", "4k"]
PersonGeneration = Literal["allow_all", "allow_adult", "dont_allow"]
Continuity = Literal["none", "chain"]

MAX_CLIPS = 50
MAX_PROMPT_CHARS = 4000
MAX_REFERENCE_IMAGES = 3
MAX_VARIANTS = 4


def whole(pattern: str, **meta: Any) -> msgspec.Meta:
    """A constraint that ``pattern`` match the whole string. Python's ``$`` also matches before
    a final newline, ECMA-262's (the document's) does not: the server checks with ``\\Z``, and
    ``veo.web.openapi`` writes that ``\\Z`` as ``$``, so both mean the same strings."""
    return msgspec.Meta(pattern=f"^(?:{pattern})\\Z", **meta)


UploadId = whole(r"upl_[0-9a-f]{24}", description="an upload's id")
OutputId = whole(r"out_[0-9a-f]{24}", description="the id of one of the caller's outputs")

# The constraints below are stated once, on the types: msgspec enforces them when the server
# decodes a request (a 422 naming the field) and writes them into the OpenAPI document, so a
# client generated from the document never sends what the server refuses. ``validate`` keeps
# its own checks for requests built in code (the CLI, tests), which msgspec does not check.
# Text the service stores: PostgreSQL's text and jsonb cannot hold a NUL character.
TEXT = r"[^\x00]*"
# ... and text that must say something: at least one character that is not whitespace.
# Whitespace is spelled out, as what Python's \s and ECMA-262's \s both take (they differ:
# Python adds U+001C..U+001F and U+0085, ECMA U+FEFF), so server and document agree.
SPACE = (r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
         r"\u3000\ufeff")
SOME_TEXT = rf"[^\x00]*[^\x00{SPACE}][^\x00]*"
Prompt = Annotated[str, whole(SOME_TEXT, min_length=1, max_length=MAX_PROMPT_CHARS,
                              description="what to film: not only whitespace, no NUL")]
UploadRef = Annotated[str, UploadId]
OutputRef = Annotated[str, OutputId]
References = Annotated[list[UploadRef], msgspec.Meta(
    max_length=MAX_REFERENCE_IMAGES, extra_json_schema={"uniqueItems": True},
    description="upload ids of images whose subject or style the clip keeps")]
Clips = Annotated[list["ClipSpec"], msgspec.Meta(min_length=1, max_length=MAX_CLIPS)]
Variants = Annotated[int, msgspec.Meta(ge=1, le=MAX_VARIANTS,
                                       description="variants of each clip")]
Seconds = Annotated[int, msgspec.Meta(ge=1, description="the model's default when absent")]
NegativePrompt = Annotated[str, whole(TEXT, max_length=MAX_PROMPT_CHARS)]
PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
# a host name or IPv4 address (a bracketed IPv6 literal is left out: Python's urlsplit raises on
# a malformed one, and no short pattern tells the good ones), then printable ASCII
WebhookUrl = Annotated[str, whole(
    rf"https?://[A-Za-z0-9._~-]+(?::{PORT})?(?:[/?#][!-~]*)?", max_length=2000,
    description="an http(s) URL: a host name or IPv4 address, an optional port, no "
                "credentials; its host must resolve (to public addresses only, unless the "
                "deployment allows private ones)")]


class ClipSpec(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    prompt: Prompt
    first_frame: UploadRef | None = None
    last_frame: UploadRef | None = None
    reference_images: References | None = None
    extend_from: OutputRef | None = None


# the request's ``final`` is the very type a job stores
FinalSpec = FinalOptions


class JobRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Body of ``POST /api/jobs``: either ``prompt`` or ``clips``."""

    prompt: Prompt | None = None
    clips: Clips | None = None
    model: str | None = None
    aspect_ratio: AspectRatio | None = None
    resolution: Resolution | None = None
    duration_seconds: Seconds | None = None
    negative_prompt: NegativePrompt | None = None
    number_of_videos: Variants = 1
    person_generation: PersonGeneration | None = None
    enhance_prompt: bool | None = None
    continuity: Continuity = "none"
    final: FinalSpec | None = None
    backend: Backend = "auto"
    webhook_url: WebhookUrl | None = None


class ValidJob(msgspec.Struct):
    model: Model
    params: Params
    clips: list[ClipSpec]
    requested_backend: str
    continuity: str
    final: FinalOptions | None
    webhook_url: str | None


def _bad(field: str, message: str, code: str = "invalid_field") -> InvalidRequest:
    return InvalidRequest(f"{field}: {message}", code=code, details={"field": field})


def resolve_model(catalog: Catalog, name: str, today: date) -> Model:
    """The catalog entry for ``name`` (an id or alias); a retired model names its successor."""
    model = catalog.get(name)
    if model is None:
        known = ", ".join(m.id for m in catalog if not m.retired(today))
        raise _bad("model", f"unknown model {name!r}; known: {known}")
    if model.retired(today):
        hint = f"; use {model.replacement}" if model.replacement else ""
        raise InvalidRequest(
            f"model: {model.id} was shut down on {model.shutdown}{hint}", code="model_retired",
            details={"field": "model", "replacement": model.replacement})
    return model


def validate(req: JobRequest, catalog: Catalog, default_model: str, today: date) -> ValidJob:
    """Apply defaults and the rules that hold for any backend; raise InvalidRequest naming the
    field. Rules of the model on the chosen backend are ``check_capabilities``'s."""
    if (req.prompt is None) == (req.clips is None):
        raise _bad("prompt", "give either prompt or clips, not both or neither")
    clips = [ClipSpec(prompt=req.prompt)] if req.prompt is not None else list(req.clips or [])
    if not 1 <= len(clips) <= MAX_CLIPS:
        raise _bad("clips", f"between 1 and {MAX_CLIPS} clips are allowed, got {len(clips)}")
    model = resolve_model(catalog, req.model or default_model, today)
    for i, clip in enumerate(clips):
        at = "" if req.prompt is not None else f"clips[{i}]."
        if not clip.prompt.strip():
            raise _bad(f"{at}prompt" if at else "prompt", "must not be empty")
        if len(clip.prompt) > MAX_PROMPT_CHARS:
            raise _bad(f"{at}prompt" if at else "prompt",
                       f"longer than {MAX_PROMPT_CHARS} characters")
        chained = req.continuity == "chain" and i > 0  # its first frame is the previous last
        if clip.last_frame is not None and clip.first_frame is None and not chained:
            raise _bad(f"clips[{i}].last_frame", "a last frame needs a first frame")
        refs = clip.reference_images or []
        if len(refs) > MAX_REFERENCE_IMAGES:
            raise _bad(f"clips[{i}].reference_images",
                       f"at most {MAX_REFERENCE_IMAGES} reference images")
        if len(set(refs)) != len(refs):
            raise _bad(f"clips[{i}].reference_images", "an image is listed twice")
        if clip.extend_from is not None and (clip.first_frame or clip.last_frame or refs):
            raise _bad(f"clips[{i}].extend_from",
                       "an extension continues a video; it takes no frames or references")
        if req.continuity == "chain" and i > 0 and (clip.first_frame or clip.extend_from):
            raise _bad(f"clips[{i}].first_frame",
                       "with continuity 'chain' every clip after the first starts from the "
                       "previous clip's last frame")
    if not 1 <= req.number_of_videos <= MAX_VARIANTS:
        raise _bad("number_of_videos", f"must be between 1 and {MAX_VARIANTS}")
    if req.negative_prompt is not None and len(req.negative_prompt) > MAX_PROMPT_CHARS:
        raise _bad("negative_prompt", f"longer than {MAX_PROMPT_CHARS} characters")
    if req.webhook_url is not None and (
        not req.webhook_url.startswith(("http://", "https://")) or len(req.webhook_url) > 2000
    ):
        raise _bad("webhook_url", "must be an http(s) URL")
    final = final_options(req.final) if req.final is not None else None
    params = Params(aspect_ratio=req.aspect_ratio or "16:9",
                    resolution=req.resolution or "720p",
                    duration_seconds=req.duration_seconds or 0,
                    number_of_videos=req.number_of_videos, negative_prompt=req.negative_prompt,
                    person_generation=req.person_generation, enhance_prompt=req.enhance_prompt)
    return ValidJob(model=model, params=params, clips=clips, requested_backend=req.backend,
                    continuity=req.continuity, final=final, webhook_url=req.webhook_url)


def final_options(f: FinalOptions) -> FinalOptions:
    """The options of a final video, checked (a request decoded from JSON was checked by its
    type already; one built in code was not)."""
    if not 0.1 <= f.crossfade_seconds <= 3.0:
        raise _bad("final.crossfade_seconds", "between 0.1 and 3 seconds")
    for name in ("trim_start_frames", "trim_end_frames"):
        if not 0 <= getattr(f, name) <= 120:
            raise _bad(f"final.{name}", "between 0 and 120 frames")
    return f


def check_capabilities(job: ValidJob, backend: str) -> Params:
    """Check the job against what its model accepts on ``backend``; return the parameters with
    the model's defaults filled in."""
    m, p = job.model, job.params
    caps: Capabilities = m.on(backend)
    if p.resolution not in caps.resolutions:
        raise _bad("resolution", f"{m.id} on {backend} supports {', '.join(caps.resolutions)}")
    duration = p.duration_seconds or caps.default_duration
    if duration not in caps.durations:
        raise _bad("duration_seconds", f"{m.id} on {backend} supports "
                   f"{', '.join(map(str, caps.durations))} seconds")
    if p.aspect_ratio not in caps.aspect_ratios:
        raise _bad("aspect_ratio", f"{m.id} supports {', '.join(caps.aspect_ratios)}")
    if p.negative_prompt is not None and not caps.negative_prompt:
        raise _bad("negative_prompt", f"{m.id} does not take a negative prompt")
    if p.enhance_prompt is not None and not caps.enhance_prompt:
        raise _bad("enhance_prompt", f"{m.id} does not take enhance_prompt")
    if p.person_generation is not None and p.person_generation not in caps.person_generation:
        allowed = ", ".join(caps.person_generation) or "no person_generation setting"
        raise _bad("person_generation", f"{m.id} allows {allowed}")
    for i, clip in enumerate(job.clips):
        if (clip.first_frame or (job.continuity == "chain" and i > 0)) and not caps.first_frame:
            raise _bad(f"clips[{i}].first_frame", f"{m.id} on {backend} takes no first frame")
        if clip.last_frame and not caps.last_frame:
            raise _bad(f"clips[{i}].last_frame", f"{m.id} on {backend} takes no last frame")
        refs = clip.reference_images or []
        if len(refs) > caps.reference_images:
            raise _bad(f"clips[{i}].reference_images",
                       f"{m.id} on {backend} takes at most {caps.reference_images}")
        if clip.extend_from and not caps.extension:
            raise _bad(f"clips[{i}].extend_from", f"{m.id} on {backend} cannot extend a video")
    return msgspec.structs.replace(p, duration_seconds=duration)


def choose_backend(requested: str, model: Model, *, has_usable_key: bool,
                   flow_enabled: bool) -> str:
    """``auto``: ``api`` whenever the owner has a key that is not invalid and the model runs
    there; else ``flow``. A cooling key counts: the job waits for it rather than moving."""
    on_api, on_flow = "api" in model.backends, "flow" in model.backends and flow_enabled
    if requested == "api":
        if not on_api:
            raise _bad("backend", f"{model.id} is not served by the api backend")
        if not has_usable_key:
            raise _bad("backend", "api was requested but no usable Gemini key exists",
                       code="no_api_key")
        return "api"
    if requested == "flow":
        if not flow_enabled:
            raise _bad("backend", "the Flow backend is disabled", code="no_backend")
        if not on_flow:
            raise _bad("backend", f"{model.id} is not offered in Flow")
        return "flow"
    if has_usable_key and on_api:
        return "api"
    if on_flow:
        return "flow"
    if not flow_enabled and "flow" in model.backends:
        raise _bad("backend", "no usable Gemini key and the Flow backend is disabled",
                   code="no_backend")
    raise _bad("backend", f"{model.id} needs a Gemini API key; none is usable",
               code="no_api_key")


# ---- what happens after an error ----------------------------------------------------------------

# seconds before run n+1 after a retryable failure of run n (n = attempts so far)
RETRY_BACKOFF = (5.0, 30.0, 120.0, 300.0)


class Retry(msgspec.Struct, frozen=True):
    defer: float
    error: ErrorInfo


class Fail(msgspec.Struct, frozen=True):
    error: ErrorInfo


class Pause(msgspec.Struct, frozen=True):
    reason: str
    until: float | None = None  # unix time the cause should clear, when known


Decision = Retry | Fail | Pause


def error_info(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, VeoError):
        return ErrorInfo(code=exc.code, message=exc.message, retryable=exc.retryable,
                         details=exc.details)
    return ErrorInfo(code="internal", message=f"internal error: {type(exc).__name__}",
                     retryable=True)


def after_error(exc: BaseException, *, attempts: int, max_attempts: int) -> Decision:
    """The failure policy: pause for causes that clear by themselves (no try is spent), retry
    what may succeed next time while tries remain, fail the rest."""
    if isinstance(exc, LoginRequired):
        return Pause(PausedReason.FLOW_NEEDS_AUTH)
    if isinstance(exc, AccountCooling):
        return Pause(PausedReason.FLOW_RATE_LIMITED)
    if isinstance(exc, AllKeysCooling):
        return Pause(PausedReason.API_KEYS_EXHAUSTED, exc.until)
    info = error_info(exc)
    if isinstance(exc, NoUsableKey) or not info.retryable or attempts >= max_attempts:
        return Fail(info)
    return Retry(RETRY_BACKOFF[min(max(attempts, 1), len(RETRY_BACKOFF)) - 1], info)


def request_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def overall_progress(clip_progress: list[int]) -> int:
    return sum(clip_progress) // len(clip_progress) if clip_progress else 0
