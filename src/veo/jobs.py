"""The job core: statuses, allowed transitions, request rules and backend routing.

Pure functions and types only: no database, queue, HTTP or browser here. Adapters call these to
decide; ``veo.db`` makes the decisions durable with guarded ``UPDATE ... WHERE status = ...``.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Literal

import msgspec

from veo.catalog import MODELS, ModelInfo
from veo.errors import InvalidRequest


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


# from-status -> statuses it may move to
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.CANCELED,
                                 JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED,
                                  JobStatus.PAUSED, JobStatus.QUEUED}),
    JobStatus.PAUSED: frozenset({JobStatus.QUEUED, JobStatus.CANCELED, JobStatus.FAILED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),  # retry
    JobStatus.CANCELED: frozenset({JobStatus.QUEUED}),  # retry
}

CANCELABLE = frozenset(s for s, to in TRANSITIONS.items() if JobStatus.CANCELED in to)
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELED})


def can_move(src: str, dst: str) -> bool:
    return JobStatus(dst) in TRANSITIONS[JobStatus(src)]


Backend = Literal["auto", "api", "flow"]
AspectRatio = Literal["16:9", "9:16"]
Resolution = Literal["720p", "1080p", "4k"]
PersonGeneration = Literal["allow_all", "allow_adult", "dont_allow"]

MAX_CLIPS = 50
MAX_PROMPT_CHARS = 4000


class ClipSpec(msgspec.Struct, forbid_unknown_fields=True):
    prompt: str
    first_frame: str | None = None
    last_frame: str | None = None


class JobRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Body of ``POST /api/jobs``: either ``prompt`` or ``clips``."""

    prompt: str | None = None
    clips: list[ClipSpec] | None = None
    model: str | None = None
    aspect_ratio: AspectRatio | None = None
    resolution: Resolution | None = None
    duration_seconds: int | None = None
    negative_prompt: str | None = None
    number_of_videos: int = 1
    person_generation: PersonGeneration | None = None
    enhance_prompt: bool | None = None
    backend: Backend = "auto"
    webhook_url: str | None = None


class Params(msgspec.Struct, omit_defaults=True):
    """The generation parameters a job stores, after defaults were applied."""

    aspect_ratio: str = "16:9"
    resolution: str = "720p"
    duration_seconds: int = 8
    number_of_videos: int = 1
    negative_prompt: str | None = None
    person_generation: str | None = None
    enhance_prompt: bool | None = None


class ValidJob(msgspec.Struct):
    model: str
    params: Params
    clips: list[ClipSpec]
    requested_backend: str
    webhook_url: str | None


def _bad(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{field}: {message}", code="invalid_field", details={"field": field})


def validate(req: JobRequest, default_model: str) -> ValidJob:
    """Apply defaults and the per-model rules; raise InvalidRequest naming the field."""
    if (req.prompt is None) == (req.clips is None):
        raise _bad("prompt", "give either prompt or clips, not both or neither")
    clips = [ClipSpec(prompt=req.prompt)] if req.prompt is not None else list(req.clips or [])
    if not 1 <= len(clips) <= MAX_CLIPS:
        raise _bad("clips", f"between 1 and {MAX_CLIPS} clips are allowed, got {len(clips)}")
    model_name = req.model or default_model
    model: ModelInfo | None = MODELS.get(model_name)
    if model is None:
        raise _bad("model", f"unknown model {model_name!r}; known: {', '.join(sorted(MODELS))}")

    for i, clip in enumerate(clips):
        field = "prompt" if req.prompt is not None else f"clips[{i}].prompt"
        if not clip.prompt.strip():
            raise _bad(field, "must not be empty")
        if len(clip.prompt) > MAX_PROMPT_CHARS:
            raise _bad(field, f"longer than {MAX_PROMPT_CHARS} characters")
        if clip.last_frame is not None and not model.last_frame:
            raise _bad(f"clips[{i}].last_frame", f"{model.name} does not support a last frame")
        if clip.last_frame is not None and clip.first_frame is None:
            raise _bad(f"clips[{i}].last_frame", "a last frame needs a first frame")

    resolution = req.resolution or "720p"
    if resolution not in model.resolutions:
        raise _bad("resolution", f"{model.name} supports {', '.join(model.resolutions)}")
    duration = req.duration_seconds if req.duration_seconds is not None else (
        max(model.durations) if resolution in model.long_only_resolutions
        else model.default_duration)
    if duration not in model.durations:
        raise _bad("duration_seconds",
                   f"{model.name} supports {', '.join(map(str, model.durations))} seconds")
    if resolution in model.long_only_resolutions and duration != max(model.durations):
        raise _bad("duration_seconds",
                   f"{resolution} on {model.name} needs duration_seconds={max(model.durations)}")
    aspect = req.aspect_ratio or "16:9"
    if resolution in model.landscape_only_resolutions and aspect != "16:9":
        raise _bad("aspect_ratio", f"{resolution} on {model.name} is 16:9 only")
    if not 1 <= req.number_of_videos <= 4:
        raise _bad("number_of_videos", "must be between 1 and 4")
    if req.person_generation is not None:
        has_image = any(c.first_frame for c in clips)
        has_text = any(not c.first_frame for c in clips)
        if has_text and req.person_generation not in model.person_text:
            raise _bad("person_generation", f"{model.name} allows "
                       f"{', '.join(model.person_text)} for text-to-video")
        if has_image and req.person_generation not in model.person_image:
            raise _bad("person_generation", f"{model.name} allows "
                       f"{', '.join(model.person_image)} with a first frame")
    if req.negative_prompt is not None and len(req.negative_prompt) > MAX_PROMPT_CHARS:
        raise _bad("negative_prompt", f"longer than {MAX_PROMPT_CHARS} characters")
    if req.webhook_url is not None and (
        not req.webhook_url.startswith(("http://", "https://")) or len(req.webhook_url) > 2000
    ):
        raise _bad("webhook_url", "must be an http(s) URL")

    params = Params(aspect_ratio=aspect, resolution=resolution, duration_seconds=duration,
                    number_of_videos=req.number_of_videos, negative_prompt=req.negative_prompt,
                    person_generation=req.person_generation, enhance_prompt=req.enhance_prompt)
    return ValidJob(model=model.name, params=params, clips=clips,
                    requested_backend=req.backend, webhook_url=req.webhook_url)


def choose_backend(requested: str, *, has_usable_key: bool, flow_enabled: bool) -> str:
    """SPEC §3 routing: ``api`` whenever a key that is not invalid exists, else ``flow``."""
    if requested == "api":
        if not has_usable_key:
            raise InvalidRequest("backend: api was requested but no usable Gemini key exists",
                                 code="no_api_key", details={"field": "backend"})
        return "api"
    if requested == "flow" or not has_usable_key:
        if not flow_enabled:
            raise InvalidRequest(
                "backend: no usable Gemini key and the Flow backend is disabled"
                if requested == "auto" else "backend: the Flow backend is disabled",
                code="no_backend", details={"field": "backend"})
        return "flow"
    return "api"


def request_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def overall_progress(clip_progress: list[int]) -> int:
    return sum(clip_progress) // len(clip_progress) if clip_progress else 0
