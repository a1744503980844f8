"""The Gemini API adapter: the one edge between the service and google-genai.

Video on the Gemini Developer API is Gemini Omni through the Interactions API
(``client.aio.interactions``): a background create returns an interaction id at once, the
interaction is polled until it ends, and its video arrives inline (base64) or as a Files API
uri that is streamed here with httpx. Veo's ``predictLongRunning`` is gone from this API; a
retired model answers 404 and becomes :class:`~veo.errors.ModelRetired`.

Foreign errors are translated here, from both of google-genai's error families (the classic
``google.genai.errors.APIError`` of the models/files endpoints and the Interactions API's
``google.genai._interactions`` classes): 429 -> a cooling key, 401/403/``API_KEY_INVALID`` -> an
invalid key, 404 for a model -> retired, other 4xx -> a failure not worth retrying, 5xx and
transport errors -> a retryable failure. Google's error texts quote keys, so every text kept
in an error goes through :func:`veo.logs.redact_text`. docs/gemini-api.md has the wire facts.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx
import msgspec
from google import genai
from google.genai import _interactions as ix
from google.genai import errors as genai_errors
from google.genai import types

from veo import logs
from veo.config import Settings
from veo.errors import GenerationFailed, KeyProblem, ModelRetired, VeoError

log = logs.get_logger("veo.gemini")

API_VERSION = "v1beta"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
# google-genai sets no timeout by default; control calls answer quickly (a background create
# returns its id at once), though a poll of an inline video carries the whole base64 body
REQUEST_TIMEOUT_MS = 60_000
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=120.0)  # seconds; read is per chunk, not total
CHUNK = 256 * 1024  # bytes per piece of a streamed video
MAX_REDIRECTS = 5
# Who retries: the key pool wants a 429 at once (it moves to another key and cools this one),
# so 429 is not in the SDK's list; by default the SDK would retry it ~4 times over seconds.
# Transient 5xx/408 are retried here, briefly, because the alternative is spending one of the
# job's arq tries (and its back-off) on a blip. A create retried after a 5xx could in principle
# start a second generation, but the job's own retry would take the same risk later.
# ``attempts`` counts calls on the classic endpoints and retries on the Interactions API
# (google-genai translates it so), so this is 2 calls there and 3 here.
RETRY_STATUS_CODES = (408, 500, 502, 503, 504)
RETRY_ATTEMPTS = 2
RETRY_INITIAL_DELAY = 0.5  # seconds
RETRY_MAX_DELAY = 4.0  # seconds

Task = Literal["text_to_video", "image_to_video", "reference_to_video", "edit", "extend"]
Delivery = Literal["inline", "uri"]
# ``requires_continuation`` is a text-decoding pause the server resumes itself in background
PENDING_STATUSES = frozenset({"queued", "in_progress", "requires_continuation"})
RPC_NAMES = {1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
             5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED",
             8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
             11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
             15: "DATA_LOSS", 16: "UNAUTHENTICATED"}
# a failed interaction with one of these rpc codes may well succeed when submitted again
RETRYABLE_RPC = frozenset({1, 2, 4, 8, 10, 13, 14})
# the Interactions API's string codes, as rpc codes
_API_CODES = {"cancelled": 1, "unknown": 2, "invalid_request": 3, "invalid_argument": 3,
              "deadline_exceeded": 4, "not_found": 5, "permission_denied": 7,
              "resource_exhausted": 8, "rate_limit_exceeded": 8, "failed_precondition": 9,
              "aborted": 10, "internal": 13, "unavailable": 14, "authentication": 16}
_RETIRED = (re.compile(r"models/([\w.\-]+) is no longer available"),
            re.compile(r"models/([\w.\-]+) is not found for API version"))
_REPLACEMENT = re.compile(r"use models/([\w.\-]+)")
_RETRY_IN = re.compile(r"retry in ([\d.]+)\s*s", re.IGNORECASE)
# a 403 about one resource (the Files API's wording), not about the key
_RESOURCE_DENIED = re.compile(r"or it may not exist", re.IGNORECASE)
_BAD_KEY_TEXT = re.compile(r"API key (not valid|expired)", re.IGNORECASE)
_FILE_ID = re.compile(r"(?:^|/)files/([A-Za-z0-9_-]+)(?::download)?(?:[?#]|$)")
_GOOGLE_HOST = urlsplit(DEFAULT_BASE_URL).hostname


class Blob(msgspec.Struct, frozen=True):
    """Media sent to Google (a frame, a reference image, a video to extend)."""

    data: bytes
    mime_type: str


class Video(msgspec.Struct, frozen=True):
    """A generated video: inline bytes, or a Files API uri to stream with :meth:`download`."""

    mime_type: str = "video/mp4"
    data: bytes | None = None
    uri: str | None = None


class RemoteError(msgspec.Struct, frozen=True):
    """Why an interaction failed, as Google said (text already redacted)."""

    code: str  # google.rpc code name ("INTERNAL") or the API's own code ("internal")
    message: str
    retryable: bool
    rpc_code: int | None = None


class Interaction(msgspec.Struct, frozen=True):
    """One poll's view of a generation. ``status`` is Google's: queued, in_progress,
    requires_action, completed, failed, cancelled, incomplete, budget_exceeded, or a newer
    value; :func:`outcome` says what it means for the clip."""

    id: str
    status: str
    model: str | None = None
    videos: tuple[Video, ...] = ()
    text: str = ""  # the model's text output (a refusal, a question), redacted
    error: RemoteError | None = None


class KeyCheck(msgspec.Struct, frozen=True):
    """``ok``; ``invalid`` (never use it); ``model_unavailable`` (the key works but its project
    cannot see the default model); ``unknown`` (could not tell: network, 429, 5xx)."""

    verdict: Literal["ok", "invalid", "model_unavailable", "unknown"]
    message: str | None = None


# ---- pure functions ------------------------------------------------------------------------

def task_for(*, first_frame: bool, last_frame: bool, references: int, video: bool,
             previous: bool) -> Task:
    if video or previous:
        return "extend"
    if references:
        return "reference_to_video"
    if first_frame or last_frame:
        return "image_to_video"
    return "text_to_video"


def request_body(*, model: str, prompt: str, first_frame: Blob | None = None,
                 last_frame: Blob | None = None, references: Sequence[Blob] = (),
                 video: Blob | None = None, previous_interaction_id: str | None = None,
                 aspect_ratio: str = "16:9", resolution: str = "720p",
                 duration_seconds: float | None = None,
                 delivery: Delivery = "uri") -> dict[str, Any]:
    """The keyword arguments of ``interactions.create`` for one clip.

    Each image is preceded by a text block holding only its marker (``<FIRST_FRAME>``,
    ``<LAST_FRAME>``, ``<IMAGE_REF_n>``), so the prompt reaches Google unchanged and the roles
    cannot be confused. ``duration_seconds`` is sent as a string with a unit ("8s"): Google
    refuses a bare number. For an extension it is the length added, not the total.
    """
    blocks: list[dict[str, Any]] = []

    def image(marker: str, blob: Blob) -> None:
        blocks.append({"type": "text", "text": marker})
        blocks.append({"type": "image", "data": base64.b64encode(blob.data).decode(),
                       "mime_type": blob.mime_type})

    if first_frame is not None:
        image("<FIRST_FRAME>", first_frame)
    if last_frame is not None:
        image("<LAST_FRAME>", last_frame)
    for n, ref in enumerate(references, 1):
        image(f"<IMAGE_REF_{n}>", ref)
    if video is not None:
        blocks.append({"type": "video", "data": base64.b64encode(video.data).decode(),
                       "mime_type": video.mime_type})
    response_format: dict[str, Any] = {"type": "video", "aspect_ratio": aspect_ratio,
                                       "resolution": resolution, "delivery": delivery}
    if duration_seconds is not None:
        response_format["duration"] = f"{duration_seconds:g}s"
    task = task_for(first_frame=first_frame is not None, last_frame=last_frame is not None,
                    references=len(references), video=video is not None,
                    previous=previous_interaction_id is not None)
    body: dict[str, Any] = {
        "model": model,
        "input": [{"type": "text", "text": prompt}, *blocks] if blocks else prompt,
        "response_format": response_format,
        "generation_config": {"video_config": {"task": task}},
        # background: the id exists before the video, so a restarted job resumes polling it;
        # store: background needs it, and so does extending this result later
        "background": True,
        "store": True,
    }
    if previous_interaction_id is not None:
        body["previous_interaction_id"] = previous_interaction_id
    return body


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _remote_error(code: Any, message: Any) -> RemoteError:
    text = logs.redact_text(str(message or "no message"))[:500]
    if isinstance(code, int):
        return RemoteError(code=RPC_NAMES.get(code, str(code)), message=text,
                           retryable=code in RETRYABLE_RPC, rpc_code=code)
    name = str(code or "unknown")
    rpc = _API_CODES.get(name.lower())
    # an unknown code is more likely a new transient kind than a permanent refusal
    return RemoteError(code=name, message=text, retryable=rpc is None or rpc in RETRYABLE_RPC,
                       rpc_code=rpc)


def from_sdk(raw: Any) -> Interaction:
    """Our :class:`Interaction` from google-genai's (or from its JSON as a dict)."""
    videos: list[Video] = []
    texts: list[str] = []
    error: RemoteError | None = None
    for step in _get(raw, "steps") or []:
        if _get(step, "type") != "model_output":
            continue
        step_error = _get(step, "error")
        if step_error is not None and error is None:
            error = _remote_error(_get(step_error, "code"), _get(step_error, "message"))
        for item in _get(step, "content") or []:
            kind = _get(item, "type")
            if kind == "video":
                data = _get(item, "data")
                videos.append(Video(mime_type=_get(item, "mime_type") or "video/mp4",
                                    data=base64.b64decode(data) if data else None,
                                    uri=_get(item, "uri")))
            elif kind == "text":
                texts.append(str(_get(item, "text") or ""))
    if error is None:
        for top in _get(raw, "errors") or []:
            error = _remote_error(_get(top, "code"), _get(top, "message"))
            break
    return Interaction(id=str(_get(raw, "id") or ""), status=str(_get(raw, "status") or ""),
                       model=_get(raw, "model"), videos=tuple(videos),
                       text=logs.redact_text("\n".join(t for t in texts if t))[:2000],
                       error=error)


def outcome(interaction: Interaction) -> tuple[Video, ...] | GenerationFailed | None:
    """What an interaction means for a clip: its videos, why it failed, or None while Google
    is still working on it."""
    status = interaction.status
    if status in PENDING_STATUSES:
        return None
    if status == "completed":
        if interaction.videos:
            return interaction.videos
        if interaction.text.strip():
            # a refusal comes back "completed" with only text: a policy failure, not a success
            return GenerationFailed(f"Google declined to make the video: {interaction.text}",
                                    code="safety_filtered", retryable=False)
        return GenerationFailed("the interaction completed without a video",
                                code="empty_result", retryable=True)
    if status == "failed":
        err = interaction.error
        if err is None:
            return GenerationFailed("the generation failed without a reason",
                                    code="generation_failed", retryable=True)
        return GenerationFailed(f"the generation failed ({err.code}): {err.message}",
                                code="generation_failed", retryable=err.retryable,
                                details={"rpc_code": err.rpc_code})
    detail = f": {interaction.error.message}" if interaction.error else ""
    if status == "budget_exceeded":
        # the project's spending cap: trying again spends nothing until someone raises it
        return GenerationFailed(f"the Gemini API budget was exceeded{detail}",
                                code="budget_exceeded", retryable=False)
    if status == "incomplete":
        return GenerationFailed(f"the generation stopped before the video was complete{detail}",
                                code="incomplete", retryable=True)
    if status == "requires_action":
        # Omni asked something back; this service has no way to answer mid-generation
        question = f": {interaction.text}" if interaction.text else detail
        return GenerationFailed(f"the model asked for input the service cannot give{question}",
                                code="requires_action", retryable=False)
    if status == "cancelled":
        return GenerationFailed("the interaction was cancelled", code="interaction_cancelled",
                                retryable=True)
    return GenerationFailed(f"the interaction ended with an unknown status {status!r}",
                            code="unexpected_status", retryable=True)


def translate(exc: BaseException) -> VeoError:
    """Map a google-genai or transport error to ours (text redacted)."""
    if isinstance(exc, VeoError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        body = exc.details if isinstance(exc.details, dict) else {}
        return from_status(int(exc.code or 0), body, str(exc.message or exc.status or ""))
    if isinstance(exc, ix.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        text = exc.body if isinstance(exc.body, str) else ""
        return from_status(exc.status_code or 0, body, text, exc.response.headers)
    if isinstance(exc, ix.APIConnectionError | httpx.TransportError | TimeoutError | OSError):
        return GenerationFailed(f"could not reach the Gemini API: {type(exc).__name__}",
                                code="network_error", retryable=True)
    if isinstance(exc, ix.APIError):  # e.g. a 200 whose body did not parse
        return GenerationFailed("the Gemini API sent an answer that could not be read",
                                code="server_error", retryable=True)
    try:
        import aiohttp  # the classic endpoints use it when it is installed
    except ImportError:  # pragma: no cover - google-genai installs it
        aiohttp = None  # type: ignore[assignment]
    if aiohttp is not None and isinstance(exc, aiohttp.ClientError):
        return GenerationFailed(f"could not reach the Gemini API: {type(exc).__name__}",
                                code="network_error", retryable=True)
    return GenerationFailed(f"unexpected error from the Gemini API: {type(exc).__name__}",
                            code="internal", retryable=True)


def from_status(status: int, body: Mapping[str, Any], text: str = "",
                headers: Mapping[str, str] | None = None) -> VeoError:
    """Map an HTTP error answer (either error body shape) to ours."""
    found = body.get("error")
    err: Mapping[str, Any] = found if isinstance(found, dict) else {}
    message = logs.redact_text(str(err.get("message") or text or "no message"))[:500]
    api_code = err.get("code")
    label = err.get("status") or (api_code if isinstance(api_code, str) else None) or ""
    details = [d for d in err.get("details") or [] if isinstance(d, dict)]
    reasons = {d.get("reason") for d in details}
    where = f"{status} {label}".strip()
    if status == 429:
        return KeyProblem(f"{where}: {message}", invalid=False,
                          retry_after=_retry_after(details, message, headers))
    if status == 401 or "API_KEY_INVALID" in reasons or (
            status == 400 and _BAD_KEY_TEXT.search(message)):
        return KeyProblem(f"{where}: {message}", invalid=True)
    if status == 403 and not _RESOURCE_DENIED.search(message):
        return KeyProblem(f"{where}: {message}", invalid=True)
    if status == 404:
        for pattern in _RETIRED:
            found = pattern.search(message)
            if found:
                model = found.group(1).rstrip(".")
                rep = _REPLACEMENT.search(message)
                return ModelRetired(f"the Gemini API no longer serves {model}: {message}",
                                    model=model,
                                    replacement=rep.group(1).rstrip(".") if rep else None)
        if api_code == "model_not_found":
            return ModelRetired(f"the Gemini API does not serve the model: {message}")
    if status in (403, 404):
        return GenerationFailed(f"the Gemini API has no such resource ({where}): {message}",
                                code="not_found", retryable=False)
    if 400 <= status < 500:
        return GenerationFailed(f"the Gemini API refused the request ({where}): {message}",
                                code="invalid_argument" if status == 400 else "request_refused",
                                retryable=False)
    return GenerationFailed(f"the Gemini API failed ({where}): {message}", code="server_error",
                            retryable=True)


def _retry_after(details: Sequence[Mapping[str, Any]], message: str,
                 headers: Mapping[str, str] | None) -> float | None:
    """Seconds Google asked us to wait: google.rpc.RetryInfo, else the text, else the header."""
    for d in details:
        if str(d.get("@type", "")).endswith("RetryInfo"):
            try:
                return float(str(d.get("retryDelay", "")).rstrip("s"))
            except ValueError:
                break
    found = _RETRY_IN.search(message)
    if found:
        return float(found.group(1))
    raw = (headers or {}).get("retry-after")
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


# ---- the adapter ---------------------------------------------------------------------------

class Gemini:
    """One google-genai client per key, held for the process's life: a client nothing
    references can be collected mid-call and close its own session under it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = (settings.gemini_base_url or DEFAULT_BASE_URL).rstrip("/")
        self._clients: dict[str, genai.Client] = {}
        self._building = asyncio.Lock()
        # redirects are followed by hand, so the key never goes to another origin
        self._http = httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, follow_redirects=False)

    def _make_client(self, key: str) -> genai.Client:
        c = genai.Client(api_key=key, http_options=types.HttpOptions(
            base_url=self.base_url, api_version=API_VERSION, timeout=REQUEST_TIMEOUT_MS,
            retry_options=types.HttpRetryOptions(
                attempts=RETRY_ATTEMPTS, initial_delay=RETRY_INITIAL_DELAY,
                max_delay=RETRY_MAX_DELAY, jitter=0.25,
                http_status_codes=list(RETRY_STATUS_CODES))))
        c.aio.interactions  # noqa: B018 - built now, off the loop, not on first use
        return c

    async def client(self, key: str) -> genai.Client:
        """The key's client. Building one takes tens of milliseconds of CPU (HTTP clients,
        TLS certificates): it happens in a thread so the event loop keeps serving."""
        c = self._clients.get(key)
        if c is None:
            logs.register_secret(key)
            async with self._building:
                c = self._clients.get(key)
                if c is None:
                    c = await asyncio.to_thread(self._make_client, key)
                    self._clients[key] = c
        return c

    async def warm(self, keys: Sequence[str]) -> None:
        """Build the clients of keys known at start (the operator pool) before jobs arrive."""
        for key in keys:
            await self.client(key)

    async def create(self, key: str, *, model: str, prompt: str,
                     first_frame: Blob | None = None, last_frame: Blob | None = None,
                     references: Sequence[Blob] = (), video: Blob | None = None,
                     previous_interaction_id: str | None = None, aspect_ratio: str = "16:9",
                     resolution: str = "720p", duration_seconds: float | None = None,
                     delivery: Delivery = "uri") -> str:
        """Start one generation in background mode; returns the interaction id to poll (with
        this key only: interactions are per Google project)."""
        body = request_body(model=model, prompt=prompt, first_frame=first_frame,
                            last_frame=last_frame, references=references, video=video,
                            previous_interaction_id=previous_interaction_id,
                            aspect_ratio=aspect_ratio, resolution=resolution,
                            duration_seconds=duration_seconds, delivery=delivery)
        interactions: Any = (await self.client(key)).aio.interactions
        try:
            created = await interactions.create(**body)
        except Exception as exc:
            err = translate(exc)
            if isinstance(err, ModelRetired) and err.model is None:
                err = ModelRetired(err.message, model=model, replacement=err.replacement)
            raise err from exc
        interaction_id = _get(created, "id")
        if not interaction_id:
            raise GenerationFailed("the Gemini API created an interaction without an id",
                                   code="server_error", retryable=True)
        return str(interaction_id)

    async def get(self, key: str, interaction_id: str) -> Interaction:
        interactions: Any = (await self.client(key)).aio.interactions
        try:
            raw = await interactions.get(interaction_id)
        except Exception as exc:
            raise translate(exc) from exc
        inline = _get(raw, "output_video")
        if inline is not None and _get(inline, "data"):
            # decoding megabytes of base64 is CPU work: keep it off the event loop
            return await asyncio.to_thread(from_sdk, raw)
        return from_sdk(raw)

    async def cancel(self, key: str, interaction_id: str) -> None:
        """Stop a generation; cancelling one that already ended changes nothing."""
        interactions: Any = (await self.client(key)).aio.interactions
        try:
            await interactions.cancel(interaction_id)
        except Exception as exc:
            raise translate(exc) from exc

    async def download(self, key: str, video: Video) -> AsyncIterator[bytes]:
        """The video's bytes in pieces: inline data as it is, a uri streamed (never whole in
        memory). Files live only ~2 days at Google: copy them out at once."""
        if video.data is not None:
            for start in range(0, len(video.data), CHUNK):
                yield video.data[start:start + CHUNK]
            return
        if not video.uri:
            raise GenerationFailed("the video has neither data nor uri", code="server_error",
                                   retryable=True)
        url = self._media_url(video.uri)
        for _ in range(MAX_REDIRECTS + 1):
            # the key goes only to the API's own origin, never to a storage host
            headers = {"x-goog-api-key": key} if _origin(url) == _origin(self.base_url) else {}
            try:
                async with self._http.stream("GET", url, headers=headers) as resp:
                    if resp.is_redirect and resp.headers.get("location"):
                        url = urljoin(url, resp.headers["location"])
                        continue
                    if resp.status_code != 200:
                        raise _download_error(resp.status_code, await resp.aread(),
                                              resp.headers)
                    async for chunk in resp.aiter_bytes(CHUNK):
                        yield chunk
                    return
            except httpx.HTTPError as exc:
                raise translate(exc) from exc
        raise GenerationFailed("the video download redirected too often",
                               code="download_failed", retryable=True)

    def _media_url(self, uri: str) -> str:
        """A Files API uri on Google's host (or ours) is fetched from the configured base URL,
        as google-genai does; any other URL is fetched as it is."""
        parts = urlsplit(uri)
        found = _FILE_ID.search(parts.path if parts.scheme else uri)
        ours = not parts.scheme or parts.hostname == _GOOGLE_HOST or (
            _origin(uri) == _origin(self.base_url))
        if found and ours:
            return f"{self.base_url}/{API_VERSION}/files/{found.group(1)}:download?alt=media"
        if parts.scheme not in ("http", "https"):
            raise GenerationFailed(f"unexpected video uri scheme {parts.scheme!r}",
                                   code="server_error", retryable=False)
        return uri

    async def validate_key(self, key: str) -> KeyCheck:
        """Look the default model up with the key: a metadata call, no generation quota."""
        try:
            await (await self.client(key)).aio.models.get(model=self.settings.default_model)
        except Exception as exc:
            err = translate(exc)
            if isinstance(err, KeyProblem) and err.invalid:
                return KeyCheck("invalid", err.message)
            if isinstance(err, ModelRetired):
                return KeyCheck("model_unavailable", err.message)
            log.info("api.key_unverified", reason=err.code)
            return KeyCheck("unknown", err.message)
        return KeyCheck("ok")

    async def close(self) -> None:
        for c in self._clients.values():
            try:
                await c.aio.aclose()
                c.close()
            except Exception as exc:  # closing is best effort
                log.debug("gemini.close_failed", error=type(exc).__name__)
        self._clients.clear()
        await self._http.aclose()


def _download_error(status: int, body: bytes, headers: Mapping[str, str]) -> VeoError:
    try:
        parsed = msgspec.json.decode(body)
    except msgspec.DecodeError:
        parsed = None
    text = body[:500].decode("utf-8", "replace")
    err = from_status(status, parsed if isinstance(parsed, dict) else {}, text, headers)
    if isinstance(err, GenerationFailed) and err.code in ("not_found", "request_refused"):
        # the file is gone (kept ~2 days) or belongs to another project: no retry brings it
        return GenerationFailed(f"the generated video is no longer available: {err.message}",
                                code="output_unavailable", retryable=False)
    return err
