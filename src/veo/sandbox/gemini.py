"""A fake Gemini Developer API as it stands today: video is Gemini Omni through the Interactions
API, and every Veo model id is retired. It speaks the wire protocol google-genai 2.34 sends and
parses (captured from the SDK, written up in docs/gemini-api.md), so the real client is
exercised end to end.

Served:
- ``POST /v1beta/interactions`` (create; ``background`` answers at once, otherwise the call
  blocks until the video exists), ``GET /v1beta/interactions/{id}``,
  ``POST /v1beta/interactions/{id}/cancel``, ``DELETE /v1beta/interactions/{id}``;
- ``GET /v1beta/files/{id}:download?alt=media`` (streamed; optionally a 302 to a raw URL on
  another origin), ``GET /v1beta/models`` and ``GET /v1beta/models/{model}`` (no quota);
- the classic ``POST /v1beta/models/{model}:{method}`` only to refuse: 404 for a retired id,
  400 "only supports Interactions API" for Omni.

Two error families, as Google has them: the Interactions API answers
``{"error": {"code": "<string>", "message"}}``; the classic endpoints (models, files) answer
``google.rpc.Status`` bodies (``{"error": {"code": 400, "status": "INVALID_ARGUMENT", ...}}``).

Keys belong to projects (by default each key is its own project); interactions and files are
visible only to keys of the project that made them: a foreign interaction answers 404 like an
unknown one, a foreign file 403 "or it may not exist" like the Files API. Quotas count create
calls per project, since Google's limits are per project, with the limit of the calling key.

Steering, from Python or over ``/_fake/*``: :meth:`FakeGemini.key` (invalid, blocked, quota,
project, visible models), :meth:`FakeGemini.force` (the next creates' outcome), ``delay``,
``queue_seconds``, ``retention_seconds``, ``redirect_downloads``, ``distinct_videos``. Prompt
markers do the same without set-up: ``[safety]`` (completed with only a refusal text),
``[fail]`` (failed, rpc 13 INTERNAL), ``[fail-arg]`` (failed, rpc 3 INVALID_ARGUMENT),
``[budget]``, ``[incomplete]``, ``[action]`` (requires_action), ``[slow:N]`` (N seconds).

Every request is recorded in ``requests`` (dicts: kind, key, model, body, at, status, ...).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import re
import secrets
import struct
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from veo.sandbox import mp4
from veo.sandbox.serving import LoopbackServer

# Retired model id -> the replacement Google's 404 names (None: the text names none). Veo left
# the Gemini API in 2026; only Vertex AI serves it now. Override per instance via ``retired``.
RETIRED: dict[str, str | None] = {
    "veo-3.1-generate-preview": "gemini-omni-1.1-flash",
    "veo-3.1-fast-generate-preview": "gemini-omni-1.1-flash",
    "veo-3.1-lite-generate-preview": "gemini-omni-1.1-flash",
    "veo-3.0-generate-001": None,
    "veo-3.0-fast-generate-001": None,
    "veo-2.0-generate-001": None,
    "gemini-omni-flash-preview": "gemini-omni-1.1-flash",
}
SERVED: tuple[str, ...] = ("gemini-omni-1.1-flash", "gemini-omni-1.2-flash")

RETENTION_SECONDS = 2 * 24 * 3600.0  # Google keeps generated interactions and files ~2 days
CLIP_SECONDS = (3.0, 10.0)  # one generation (or one extension step) is 3-10 s
DEFAULT_SECONDS = 8.0
MAX_EXTENDED_SECONDS = 40.0  # extensions stop at 40 s in all
MAX_REFERENCES = 3
API_HOST = "https://generativelanguage.googleapis.com"
STATUSES = ("queued", "in_progress", "requires_action", "completed", "failed", "cancelled",
            "incomplete", "budget_exceeded")
PENDING = ("queued", "in_progress")
OUTCOMES = ("ok", "safety", "fail", "fail-arg", "budget", "incomplete", "action")
TASKS = ("text_to_video", "image_to_video", "reference_to_video", "edit", "extend")
ASPECTS = ("16:9", "9:16")
RESOLUTIONS = ("360p", "720p", "1080p", "4k")
DELIVERIES = ("inline", "uri")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
# what the SDK may put in a create body; anything else is an unknown field to Google
CREATE_FIELDS = frozenset({"model", "input", "response_format", "generation_config",
                           "previous_interaction_id", "background", "store", "stream"})
# fields Google knows but Omni refuses (no negative prompt, seed, system instruction, ...)
UNSUPPORTED_FIELDS = frozenset({"system_instruction", "tools", "safety_settings",
                                "negative_prompt", "seed", "temperature", "top_p",
                                "max_output_tokens", "stop_sequences", "thinking_level",
                                "speech_config", "image_config", "response_modalities",
                                "response_mime_type", "webhook_config", "cached_content"})
FORMAT_FIELDS = frozenset({"type", "aspect_ratio", "resolution", "duration", "delivery"})
_MARKER = re.compile(r"<(FIRST_FRAME|LAST_FRAME|IMAGE_REF_(\d+))>")
_SLOW = re.compile(r"\[slow:([\d.]+)\]")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")
_FILE_URI = re.compile(r"/files/([a-z0-9]+)")
CHUNK = 64 * 1024


class Refused(Exception):
    """An error answer; raised anywhere in a handler, rendered by the app."""

    def __init__(self, status: int, body: dict[str, Any],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


def interactions_error(status: int, code: str, message: str,
                       details: list[dict[str, Any]] | None = None) -> Refused:
    """The Interactions API's error body: a string ``code``, not a google.rpc.Status."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return Refused(status, {"error": body})


def rpc_error(status: int, rpc_status: str, message: str,
              details: list[dict[str, Any]] | None = None) -> Refused:
    """The classic endpoints' google.rpc.Status body."""
    body: dict[str, Any] = {"code": status, "message": message, "status": rpc_status}
    if details:
        body["details"] = details
    return Refused(status, {"error": body})


def _error_info(reason: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"}}


def _bad(message: str) -> Refused:
    return interactions_error(400, "invalid_request", message)


@dataclasses.dataclass
class KeyRule:
    invalid: bool = False
    blocked: bool = False
    quota: int | None = None  # create calls per window, counted per project
    window: float = 60.0  # seconds
    project: str | None = None  # None: the key is a project of its own
    models: tuple[str, ...] | None = None  # models the project may use; None: every served one


@dataclasses.dataclass
class StoredFile:
    id: str
    project: str
    data: bytes
    created: float  # monotonic
    token: str  # the secret part of the raw (redirect) URL
    mime_type: str = "video/mp4"


@dataclasses.dataclass
class InputImage:
    role: str  # first_frame | last_frame | reference_<n>
    sha256: str


@dataclasses.dataclass
class Interaction:
    id: str
    key: str
    project: str
    model: str
    task: str
    prompt: str
    images: list[InputImage]
    video: bytes | None  # the source of an edit or extension
    video_seconds: float | None
    previous_interaction_id: str | None
    response_format: dict[str, Any]  # as received
    aspect_ratio: str
    resolution: str
    delivery: str
    seconds: float  # length of the result
    background: bool
    store: bool
    outcome: str
    created: float  # monotonic
    created_at: str
    ready_at: float  # monotonic; tests may set it to 0 to finish at once
    status: str = "in_progress"
    updated_at: str = ""
    result: bytes | None = None
    file_id: str | None = None
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mp4_seconds(data: bytes) -> float | None:
    """The movie length from the ``mvhd`` box, or None if ``data`` is not a readable MP4."""
    try:
        top = mp4.boxes(data)
    except ValueError:
        return None
    for kind, offset, size in top:
        if kind != "moov":
            continue
        pos, end = offset + 8, offset + size
        while pos + 8 <= end:
            child, ctype = struct.unpack(">I4s", data[pos:pos + 8])
            if child < 8:
                return None
            if ctype == b"mvhd":
                version = data[pos + 8]
                if version == 1:
                    timescale, duration = struct.unpack(">IQ", data[pos + 28:pos + 40])
                else:
                    timescale, duration = struct.unpack(">II", data[pos + 20:pos + 28])
                return duration / timescale if timescale else None
            pos += child
    return None


class FakeGemini(LoopbackServer):
    def __init__(self, *, retired: dict[str, str | None] | None = None,
                 served: Iterable[str] = SERVED) -> None:
        self.retired: dict[str, str | None] = dict(RETIRED if retired is None else retired)
        self.served: set[str] = set(served)
        self.rules: dict[str, KeyRule] = {}
        self.delay = 0.0  # seconds a generation takes
        self.queue_seconds = 0.0  # seconds a new interaction reports "queued" first
        self.retention_seconds = RETENTION_SECONDS
        self.redirect_downloads = False
        self.distinct_videos = True  # False: one cached picture per shape (benchmarks)
        self.interactions: dict[str, Interaction] = {}
        self.files: dict[str, StoredFile] = {}
        self.requests: list[dict[str, Any]] = []
        self._forced: deque[str] = deque()
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self.app = Starlette(
            routes=[
                Route("/v1beta/interactions", self._create, methods=["POST"]),
                Route("/v1beta/interactions/{iid}", self._get, methods=["GET"]),
                Route("/v1beta/interactions/{iid}", self._delete, methods=["DELETE"]),
                Route("/v1beta/interactions/{iid}/cancel", self._cancel, methods=["POST"]),
                Route("/v1beta/models", self._list_models, methods=["GET"]),
                Route("/v1beta/models/{name:path}", self._model, methods=["GET", "POST"]),
                Route("/v1beta/files/{name}", self._download, methods=["GET"]),
                Route("/v1beta/{path:path}", self._unknown, methods=["GET", "POST", "DELETE"]),
                Route("/_fake/raw/{token}", self._raw, methods=["GET"]),
                Route("/_fake/keys", self._ctl_keys, methods=["POST"]),
                Route("/_fake/config", self._ctl_config, methods=["POST"]),
                Route("/_fake/requests", self._ctl_requests, methods=["GET"]),
            ],
            exception_handlers={Refused: self._refused},  # type: ignore[dict-item]
        )

    # ---- control ------------------------------------------------------------------------

    def key(self, key: str, **rule: Any) -> None:
        """Set rules for a key: ``invalid``, ``blocked``, ``quota`` + ``window``, ``project``,
        ``models`` (what its project may use)."""
        if "models" in rule and rule["models"] is not None:
            rule["models"] = tuple(rule["models"])
        self.rules[key] = dataclasses.replace(self.rules.get(key, KeyRule()), **rule)

    def project(self, name: str, *keys: str) -> None:
        """Put keys in one project: they see each other's interactions and share its quota."""
        for k in keys:
            self.key(k, project=name)

    def project_of(self, key: str) -> str:
        rule = self.rules.get(key)
        if rule is not None and rule.project:
            return rule.project
        return "project-" + _sha(key.encode())[:12]

    def force(self, outcome: str, times: int = 1) -> None:
        """The next ``times`` creates end with ``outcome`` (one of ``OUTCOMES``)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; one of {OUTCOMES}")
        self._forced.extend([outcome] * times)

    def finish_all(self) -> None:
        """Every pending interaction is ready at its next poll."""
        for rec in self.interactions.values():
            rec.ready_at = 0.0

    @property
    def operations(self) -> dict[str, Interaction]:
        # older tests hurry generations through ``operations[...].ready_at``
        return self.interactions

    def creates(self, key: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests
                if r["kind"] == "create" and (key is None or r["key"] == key)]

    # ---- plumbing -----------------------------------------------------------------------

    async def _refused(self, request: Request, exc: Refused) -> Response:
        record = getattr(request.state, "record", None)
        if record is not None:
            record["status"] = exc.status
        return JSONResponse(exc.body, exc.status, headers=exc.headers)

    def _record(self, request: Request, kind: str, **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"kind": kind, "key": self._key_of(request),
                                  "path": request.url.path, "at": time.monotonic(),
                                  "status": 200, "model": None, "body": None, **fields}
        self.requests.append(record)
        request.state.record = record
        return record

    @staticmethod
    def _key_of(request: Request) -> str:
        return request.headers.get("x-goog-api-key") or request.query_params.get("key") or ""

    def _auth(self, key: str, *, interactions: bool) -> str:
        """The key's project, or the refusal Google gives (its shape depends on the API)."""
        rule = self.rules.get(key, KeyRule())
        if not key:
            if interactions:
                raise interactions_error(401, "authentication", "Missing API key. Pass a key "
                                         "in the x-goog-api-key header.")
            raise rpc_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered "
                            "callers (callers without established identity). Please use API "
                            "Key or other form of API consumer identity to call this API.")
        if rule.invalid:
            if interactions:
                raise interactions_error(401, "authentication",
                                         "API key not valid. Please pass a valid API key.")
            raise rpc_error(400, "INVALID_ARGUMENT",
                            "API key not valid. Please pass a valid API key.",
                            [_error_info("API_KEY_INVALID")])
        if rule.blocked:
            # the real text quotes the key: whoever stores or logs it must redact it
            text = f"Permission denied: Consumer 'api_key:{key}' has been suspended."
            if interactions:
                raise interactions_error(403, "permission_denied", text)
            raise rpc_error(403, "PERMISSION_DENIED", text, [_error_info("CONSUMER_SUSPENDED")])
        return self.project_of(key)

    def _spend_quota(self, key: str, project: str) -> None:
        rule = self.rules.get(key, KeyRule())
        if rule.quota is None:
            return
        now = time.monotonic()
        hits = self._hits[project]
        while hits and hits[0] <= now - rule.window:
            hits.popleft()
        if len(hits) >= rule.quota:
            wait = max(0.0, hits[0] + rule.window - now) if hits else rule.window
            raise interactions_error(
                429, "rate_limit_exceeded",
                "You exceeded your current quota, please check your plan and billing details. "
                f"Please retry in {wait:.3f}s.",
                [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                  "violations": [{"quotaMetric": "generativelanguage.googleapis.com/"
                                  "interactions_requests", "quotaId": "RequestsPerMinute"}]},
                 {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                  "retryDelay": f"{wait:.3f}s"}])
        hits.append(now)

    def _visible_models(self, key: str) -> set[str]:
        rule = self.rules.get(key, KeyRule())
        return self.served if rule.models is None else self.served & set(rule.models)

    def _alive(self, rec: Interaction | StoredFile) -> bool:
        return time.monotonic() - rec.created < self.retention_seconds

    def _interaction(self, iid: str, project: str) -> Interaction:
        rec = self.interactions.get(iid)
        if rec is not None and not self._alive(rec):
            del self.interactions[iid]
            rec = None
        # another project's interaction answers exactly like a missing one
        if rec is None or rec.project != project:
            raise interactions_error(404, "not_found", f"Interaction {iid} not found.")
        return rec

    # ---- the Interactions API -------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        record = self._record(request, "create")
        key = record["key"]
        project = self._auth(key, interactions=True)
        try:
            body = await request.json()
        except ValueError:
            raise _bad("Invalid JSON payload received.") from None
        record["body"] = body
        if not isinstance(body, dict):
            raise _bad("Invalid JSON payload received. Expected an object.")
        model = str(body.get("model") or "").removeprefix("models/")
        record["model"] = model
        rec = await self._validate(body, key, project, model)
        self._spend_quota(key, project)
        self.interactions[rec.id] = rec
        record["interaction"] = rec.id
        if rec.background:
            return JSONResponse(self._view(rec))
        while rec.status in PENDING:
            await asyncio.sleep(max(0.0, min(0.05, rec.ready_at - time.monotonic())))
            await self._settle(rec)
        if not rec.store:
            self.interactions.pop(rec.id, None)
        return JSONResponse(self._view(rec))

    async def _validate(self, body: dict[str, Any], key: str, project: str,
                        model: str) -> Interaction:
        for name in body:
            if name in UNSUPPORTED_FIELDS:
                raise _bad(f"`{name}` isn't supported by this model. Please remove it or "
                           "refer to the Gemini API documentation for supported usage.")
            if name not in CREATE_FIELDS:
                raise _bad(f'Invalid JSON payload received. Unknown name "{name}": Cannot '
                           "find field.")
        if not model:
            raise _bad("model is required.")
        if model in self.retired:
            self._refuse_retired(model)
        if model not in self._visible_models(key):
            raise interactions_error(404, "model_not_found", f"models/{model} is not found "
                                     "for API version v1beta, or is not supported for "
                                     "interactions.")
        if body.get("stream"):
            raise _bad("Streaming is not supported for video generation; use background mode.")
        background = bool(body.get("background", False))
        store = bool(body.get("store", True))
        if background and not store:
            raise _bad("background=true requires store=true.")
        fmt = self._format(body.get("response_format"))
        task = self._requested_task(body.get("generation_config"))
        blocks = self._blocks(body.get("input"))
        texts = [b["text"] for b in blocks if b["type"] == "text"]
        markers = [m.group(0)[1:-1] for t in texts for m in _MARKER.finditer(t)]
        prompt = "\n".join(t for t in texts if _MARKER.sub("", t).strip())
        images = [self._media(b, project, i) for i, b in enumerate(blocks) if b["type"] == "image"]
        videos = [self._media(b, project, i) for i, b in enumerate(blocks) if b["type"] == "video"]
        previous_id = body.get("previous_interaction_id")
        previous = self._interaction(str(previous_id), project) if previous_id else None
        if task is None:  # Google picks the task from the inputs when none is named
            task = ("reference_to_video" if any(m.startswith("IMAGE_REF") for m in markers)
                    or len(images) > 2 else "image_to_video" if images
                    else "edit" if videos or previous else "text_to_video")
        roles = self._roles(task, markers, len(images))
        seconds, source, source_seconds = self._shape(task, fmt, images, videos, previous)
        outcome = self._forced.popleft() if self._forced else self._marked(prompt)
        slow = _SLOW.search(prompt)
        now = time.monotonic()
        delay = float(slow.group(1)) if slow else self.delay
        return Interaction(
            id=f"v1_{uuid.uuid4().hex}", key=key, project=project, model=model, task=task,
            prompt=prompt, images=[InputImage(r, _sha(d)) for r, d in zip(roles, images,
                                                                            strict=True)],
            video=source, video_seconds=source_seconds,
            previous_interaction_id=str(previous_id) if previous_id else None,
            response_format=fmt["raw"], aspect_ratio=fmt["aspect_ratio"],
            resolution=fmt["resolution"], delivery=fmt["delivery"], seconds=seconds,
            background=background, store=store, outcome=outcome, created=now,
            created_at=_now_iso(), ready_at=now + delay,
            status="queued" if self.queue_seconds > 0 else "in_progress")

    def _refuse_retired(self, model: str) -> None:
        replacement = self.retired.get(model)
        text = f"This model models/{model} is no longer available."
        if replacement:
            text += f" Please update your code to use models/{replacement} instead."
        raise interactions_error(404, "model_not_found", text)

    @staticmethod
    def _format(raw: Any) -> dict[str, Any]:
        if isinstance(raw, list):
            raw = next((f for f in raw if isinstance(f, dict) and f.get("type") == "video"),
                       None) or (raw[0] if raw else None)
        if raw is None:
            raw = {"type": "video"}
        if not isinstance(raw, dict):
            raise _bad("Invalid value at 'response_format': expected an object.")
        for name in raw:
            if name not in FORMAT_FIELDS:
                raise _bad(f'Invalid JSON payload received. Unknown name "{name}" at '
                           "'response_format': Cannot find field.")
        if raw.get("type", "video") != "video":
            raise _bad("This model only produces video: response_format.type must be video.")
        aspect = raw.get("aspect_ratio", "16:9")
        resolution = raw.get("resolution", "720p")
        delivery = raw.get("delivery", "inline")
        for name, value, allowed in (("aspect_ratio", aspect, ASPECTS),
                                     ("resolution", resolution, RESOLUTIONS),
                                     ("delivery", delivery, DELIVERIES)):
            if value not in allowed:
                raise _bad(f"Invalid value at 'response_format.{name}': {value!r}; expected "
                           f"one of {', '.join(allowed)}.")
        duration = raw.get("duration")
        seconds = None
        if duration is not None:
            match = _DURATION.match(duration) if isinstance(duration, str) else None
            if match is None:
                # a Duration proto field: a bare number is not a duration
                raise _bad("Invalid value at 'response_format.duration' "
                           f"(type.googleapis.com/google.protobuf.Duration), {duration}")
            seconds = float(match.group(1))
        return {"raw": raw, "aspect_ratio": aspect, "resolution": resolution,
                "delivery": delivery, "seconds": seconds}

    @staticmethod
    def _requested_task(config: Any) -> str | None:
        if config is None:
            return None
        if not isinstance(config, dict):
            raise _bad("Invalid value at 'generation_config': expected an object.")
        for name in config:
            if name != "video_config":
                raise _bad(f"`{name}` isn't supported by this model. Please remove it or "
                           "refer to the Gemini API documentation for supported usage.")
        video_config = config.get("video_config") or {}
        for name in video_config:
            if name != "task":
                raise _bad(f"`{name}` isn't supported by this model. Please remove it or "
                           "refer to the Gemini API documentation for supported usage.")
        task = video_config.get("task")
        if task is not None and task not in TASKS:
            raise _bad(f"Invalid value at 'generation_config.video_config.task': {task!r}.")
        return str(task) if task is not None else None

    @staticmethod
    def _blocks(raw: Any) -> list[dict[str, Any]]:
        if isinstance(raw, str):
            return [{"type": "text", "text": raw}]
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise _bad("Invalid value at 'input': expected a string or a list.")
        blocks: list[dict[str, Any]] = []
        for item in raw:
            if not isinstance(item, dict):
                raise _bad("Invalid value at 'input': expected objects.")
            if item.get("type") == "user_input":
                content = item.get("content") or []
                blocks.extend([{"type": "text", "text": content}] if isinstance(content, str)
                              else content)
            elif item.get("type") in ("model_output", "thought"):
                raise _bad("input may hold only user_input steps for this model.")
            else:
                blocks.append(item)
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in ("text", "image", "video", "document"):
                raise _bad(f"Content of type {kind!r} is not supported by this model.")
            if kind == "text" and not isinstance(block.get("text"), str):
                raise _bad("A text block needs a text.")
        return blocks

    def _media(self, block: dict[str, Any], project: str, index: int) -> bytes:
        if block.get("data") is not None:
            try:
                data = base64.b64decode(str(block["data"]), validate=True)
            except (binascii.Error, ValueError):
                raise _bad(f"Invalid value at 'input[{index}].data' (TYPE_BYTES), Base64 "
                           "decoding failed.") from None
        elif block.get("uri"):
            match = _FILE_URI.search(str(block["uri"]))
            stored = self.files.get(match.group(1)) if match else None
            if stored is None or stored.project != project or not self._alive(stored):
                raise _bad(f"The file at input[{index}].uri does not exist or is not "
                           "accessible.")
            data = stored.data
        else:
            raise _bad(f"input[{index}] needs data or uri.")
        mime = block.get("mime_type")
        if block["type"] == "image" and mime is not None and mime not in IMAGE_TYPES:
            raise _bad(f"Unsupported image mime type {mime!r}.")
        return data

    @staticmethod
    def _roles(task: str, markers: list[str], count: int) -> list[str]:
        """Markers in the text, in order, name the images in order; unmarked images take their
        place's role (first frame then last frame, or reference 1, 2, 3)."""
        roles = []
        for i in range(count):
            marker = markers[i] if i < len(markers) else None
            if marker is None:
                marker = (("FIRST_FRAME", "LAST_FRAME")[i] if task == "image_to_video" and i < 2
                          else f"IMAGE_REF_{i + 1}")
            roles.append(marker.lower().replace("image_ref_", "reference_"))
        if task in ("text_to_video", "edit", "extend") and count:
            raise _bad(f"Task {task} takes no images.")
        if task == "image_to_video":
            if not 1 <= count <= 2 or any(r.startswith("reference") for r in roles):
                raise _bad("image_to_video takes a first frame and optionally a last frame.")
            if "first_frame" not in roles:
                raise _bad("A last frame needs a first frame.")
            if len(set(roles)) != len(roles):
                raise _bad("Each frame may be given once.")
        if task == "reference_to_video":
            if count > MAX_REFERENCES:
                raise _bad(f"At most {MAX_REFERENCES} reference images are supported.")
            if count == 0 or not all(r.startswith("reference_") for r in roles):
                raise _bad("reference_to_video takes 1 to 3 reference images and no frames.")
        return roles

    def _shape(self, task: str, fmt: dict[str, Any], images: list[bytes], videos: list[bytes],
               previous: Interaction | None) -> tuple[float, bytes | None, float | None]:
        """(seconds of the result, source video, its seconds)."""
        low, high = CLIP_SECONDS
        asked = fmt["seconds"]
        if task in ("edit", "extend"):
            if len(videos) + (previous is not None) != 1:
                raise _bad(f"{task} needs exactly one video: in input or as "
                           "previous_interaction_id.")
            if previous is not None:
                if previous.status != "completed" or previous.result is None:
                    raise _bad(f"Interaction {previous.id} has no video to {task}.")
                source, source_seconds = previous.result, previous.seconds
            else:
                source = videos[0]
                read = mp4_seconds(source)
                if read is None:
                    raise _bad("The input video could not be read as MP4.")
                if read > high + 0.05:
                    raise _bad(f"The input video must be at most {high:g} seconds long.")
                source_seconds = read
            if task == "edit":  # an edit keeps the source's length
                return source_seconds, source, source_seconds
            step = DEFAULT_SECONDS if asked is None else asked
            if not low <= step <= high:
                raise _bad(f"An extension adds {low:g}s to {high:g}s; got {step:g}s.")
            if source_seconds + step > MAX_EXTENDED_SECONDS + 0.05:
                raise _bad(f"Extended videos can be at most {MAX_EXTENDED_SECONDS:g} seconds "
                           f"long: {source_seconds:g}s + {step:g}s is too long.")
            # the result is the whole video, source and extension: the next step builds on it
            return round(source_seconds + step, 3), source, source_seconds
        if videos or previous is not None:
            raise _bad(f"Task {task} takes no video and no previous_interaction_id.")
        seconds = DEFAULT_SECONDS if asked is None else asked
        if not low <= seconds <= high:
            raise _bad(f"duration must be between {low:g}s and {high:g}s; got {seconds:g}s.")
        return seconds, None, None

    @staticmethod
    def _marked(prompt: str) -> str:
        for marker, outcome in (("[safety]", "safety"), ("[fail-arg]", "fail-arg"),
                                ("[fail]", "fail"), ("[budget]", "budget"),
                                ("[incomplete]", "incomplete"), ("[action]", "action")):
            if marker in prompt:
                return outcome
        return "ok"

    async def _settle(self, rec: Interaction) -> None:
        """Move a pending interaction on once its time has come (rendering the video)."""
        now = time.monotonic()
        if rec.status == "queued" and now >= rec.created + self.queue_seconds:
            rec.status = "in_progress"
        if rec.status not in PENDING or now < rec.ready_at:
            return
        async with rec.lock:
            if rec.status not in PENDING:
                return
            if rec.outcome == "ok":
                try:
                    rec.result = await mp4.render(self.identity(rec), duration=rec.seconds,
                                                  aspect_ratio=rec.aspect_ratio,
                                                  distinct=self.distinct_videos)
                except RuntimeError:
                    rec.outcome = "fail"
                else:
                    if rec.delivery == "uri":
                        fid = uuid.uuid4().hex[:16]
                        self.files[fid] = StoredFile(fid, rec.project, rec.result,
                                                     time.monotonic(), secrets.token_urlsafe(24))
                        rec.file_id = fid
            rec.status = {"ok": "completed", "safety": "completed", "fail": "failed",
                          "fail-arg": "failed", "budget": "budget_exceeded",
                          "incomplete": "incomplete", "action": "requires_action"}[rec.outcome]
            rec.updated_at = _now_iso()

    def identity(self, rec: Interaction) -> dict[str, Any]:
        """What the video's identity box says: enough to prove which request made it."""
        role = {i.role: i.sha256 for i in rec.images}
        return {
            "backend": "api", "interaction": rec.id, "model": rec.model, "project": rec.project,
            "prompt": rec.prompt, "prompt_sha256": _sha(rec.prompt.encode()), "task": rec.task,
            "images": [{"role": i.role, "sha256": i.sha256} for i in rec.images],
            "first_frame_sha256": role.get("first_frame"),
            "last_frame_sha256": role.get("last_frame"),
            "video_sha256": _sha(rec.video) if rec.video is not None else None,
            "source_seconds": rec.video_seconds,
            "previous_interaction_id": rec.previous_interaction_id,
            "response_format": rec.response_format, "aspect_ratio": rec.aspect_ratio,
            "resolution": rec.resolution, "duration_seconds": rec.seconds,
        }

    def _view(self, rec: Interaction) -> dict[str, Any]:
        """The Interaction resource as Google sends it."""
        out: dict[str, Any] = {
            "id": rec.id, "object": "interaction", "model": rec.model, "status": rec.status,
            "created": rec.created_at, "updated": rec.updated_at or rec.created_at,
            "response_format": rec.response_format, "steps": [],
        }
        if rec.previous_interaction_id:
            out["previous_interaction_id"] = rec.previous_interaction_id
        status, outcome = rec.status, rec.outcome
        if status == "completed" and outcome == "ok" and rec.result is not None:
            video: dict[str, Any] = {"type": "video", "mime_type": "video/mp4"}
            if rec.delivery == "uri" and rec.file_id:
                video["uri"] = f"{API_HOST}/v1beta/files/{rec.file_id}:download?alt=media"
            else:
                video["data"] = base64.b64encode(rec.result).decode()
            out["steps"] = [{"type": "model_output", "content": [video]}]
        elif status == "completed" and outcome == "safety":
            out["steps"] = [{"type": "model_output", "content": [{
                "type": "text", "text": "I can't make that video: the request may violate our "
                "safety policies. You have not been charged."}]}]
        elif status == "failed":
            code, text, name = ((13, "Internal error while generating the video.", "internal")
                                if outcome == "fail" else
                                (3, "The prompt could not be processed.", "invalid_request"))
            out["steps"] = [{"type": "model_output",
                             "error": {"code": code, "message": text, "details": []}}]
            out["errors"] = [{"code": name, "message": text}]
        elif status == "budget_exceeded":
            out["errors"] = [{"code": "budget_exceeded",
                              "message": "The interaction exceeded its budget."}]
        elif status == "incomplete":
            out["errors"] = [{"code": "incomplete", "message": "The generation stopped before "
                              "the video was complete."}]
        elif status == "requires_action":
            out["steps"] = [{"type": "model_output", "content": [{
                "type": "text", "text": "Which of the two people should the video follow?"}]}]
        if status not in PENDING:
            frames = int(rec.seconds * 24)
            out["usage"] = {"total_input_tokens": max(1, len(rec.prompt) // 4),
                            "total_output_tokens": frames * 258,
                            "total_tokens": max(1, len(rec.prompt) // 4) + frames * 258}
        return out

    async def _get(self, request: Request) -> Response:
        record = self._record(request, "get", interaction=request.path_params["iid"])
        project = self._auth(record["key"], interactions=True)
        if request.query_params.get("stream", "false") == "true":
            raise _bad("Streaming is not supported for video generation.")
        rec = self._interaction(request.path_params["iid"], project)
        record["model"] = rec.model
        await self._settle(rec)
        return JSONResponse(self._view(rec))

    async def _cancel(self, request: Request) -> Response:
        record = self._record(request, "cancel", interaction=request.path_params["iid"])
        project = self._auth(record["key"], interactions=True)
        rec = self._interaction(request.path_params["iid"], project)
        await self._settle(rec)
        if rec.status in PENDING:
            rec.status, rec.updated_at = "cancelled", _now_iso()
        # cancelling a finished interaction changes nothing and is not an error (our choice)
        return JSONResponse(self._view(rec))

    async def _delete(self, request: Request) -> Response:
        record = self._record(request, "delete", interaction=request.path_params["iid"])
        project = self._auth(record["key"], interactions=True)
        rec = self._interaction(request.path_params["iid"], project)
        del self.interactions[rec.id]
        return JSONResponse({})

    # ---- classic endpoints ----------------------------------------------------------------

    def _model_resource(self, model: str) -> dict[str, Any]:
        return {"name": f"models/{model}", "baseModelId": model,
                "version": model.split("-")[2] if model.count("-") >= 2 else "1",
                "displayName": model.replace("-", " ").title(),
                "description": "Gemini Omni: video generation through the Interactions API."}

    async def _list_models(self, request: Request) -> Response:
        record = self._record(request, "list_models")
        self._auth(record["key"], interactions=False)
        return JSONResponse({"models": [self._model_resource(m)
                                        for m in sorted(self._visible_models(record["key"]))]})

    async def _model(self, request: Request) -> Response:
        name = request.path_params["name"]
        model, _, method = name.partition(":")
        record = self._record(request, "legacy" if method else "get_model", model=model)
        self._auth(record["key"], interactions=False)
        if request.method == "GET" and not method and "/" not in model:
            if model in self.retired or model not in self._visible_models(record["key"]):
                raise rpc_error(404, "NOT_FOUND", f"models/{model} is not found for API "
                                "version v1beta, or is not supported for get.")
            return JSONResponse(self._model_resource(model))
        if method and model in self.served:
            raise rpc_error(400, "INVALID_ARGUMENT",
                            "This model only supports Interactions API.")
        raise rpc_error(404, "NOT_FOUND", f"models/{model} is not found for API version "
                        f"v1beta, or is not supported for {method or 'this method'}. Call "
                        "ListModels to see the list of available models and their supported "
                        "methods.")

    async def _download(self, request: Request) -> Response:
        name = request.path_params["name"]
        fid = name.removesuffix(":download")
        record = self._record(request, "download", file=fid)
        project = self._auth(record["key"], interactions=False)
        if not name.endswith(":download") or request.query_params.get("alt") != "media":
            raise rpc_error(400, "INVALID_ARGUMENT", "Only media downloads are served: "
                            "files/{id}:download?alt=media.")
        stored = self.files.get(fid)
        if stored is not None and not self._alive(stored):
            del self.files[fid]
            stored = None
        if stored is None:
            raise rpc_error(404, "NOT_FOUND", f"File {fid} was not found.")
        if stored.project != project:
            raise rpc_error(403, "PERMISSION_DENIED", f"You do not have permission to access "
                            f"the File {fid} or it may not exist.")
        if self.redirect_downloads:
            return RedirectResponse(self._raw_url(request, stored), 302)
        return self._stream(stored)

    def _raw_url(self, request: Request, stored: StoredFile) -> str:
        # another origin, as Google's storage URLs are: a client must not send its key there
        host = urlsplit(str(request.base_url)).hostname
        other = "localhost" if host == "127.0.0.1" else "127.0.0.1"
        return f"http://{other}:{request.url.port}/_fake/raw/{stored.token}"

    @staticmethod
    def _stream(stored: StoredFile) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(stored.data), CHUNK):
                yield stored.data[start:start + CHUNK]

        return StreamingResponse(chunks(), media_type=stored.mime_type,
                                 headers={"content-length": str(len(stored.data))})

    async def _raw(self, request: Request) -> Response:
        self._record(request, "raw")
        stored = next((f for f in self.files.values()
                       if secrets.compare_digest(f.token, request.path_params["token"])), None)
        if stored is None or not self._alive(stored):
            return Response(status_code=404)
        return self._stream(stored)

    async def _unknown(self, request: Request) -> Response:
        self._record(request, "unknown")
        raise rpc_error(404, "NOT_FOUND", f"Method not found: {request.url.path}")

    # ---- control over HTTP (for other processes) -------------------------------------------

    async def _ctl_keys(self, request: Request) -> Response:
        """``{"<key>": {"invalid": true, "project": "p1", "quota": 2, "window": 60}}``."""
        body = await request.json()
        for key, rule in body.items():
            self.key(key, **rule)
        return JSONResponse({"ok": True})

    async def _ctl_config(self, request: Request) -> Response:
        body = await request.json()
        for name in ("delay", "queue_seconds", "retention_seconds"):
            if name in body:
                setattr(self, name, float(body[name]))
        for name in ("redirect_downloads", "distinct_videos"):
            if name in body:
                setattr(self, name, bool(body[name]))
        if "force" in body:
            self.force(str(body["force"]), int(body.get("times", 1)))
        return JSONResponse({"ok": True})

    async def _ctl_requests(self, request: Request) -> Response:
        # bodies hold base64 media: other processes get the bookkeeping only
        return JSONResponse([{k: v for k, v in r.items() if k != "body"}
                             for r in self.requests])


def main() -> None:
    """Run the fake on its own: ``python -m veo.sandbox.gemini --port 8010 --delay 20``."""
    import argparse

    parser = argparse.ArgumentParser(description="fake Gemini API (Omni, Interactions API)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per generation")
    parser.add_argument("--retention", type=float, default=RETENTION_SECONDS,
                        help="seconds interactions and files are kept")
    args = parser.parse_args()
    fake = FakeGemini()
    fake.delay = args.delay
    fake.retention_seconds = args.retention
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
