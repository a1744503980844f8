"""What the async and the sync client share, free of I/O: errors, the retry policy, the
Server-Sent Events parser, and a description of every call (method, path, body, decoder), so
each client only has to send requests."""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import mimetypes
import random
import re
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from veo import wire
from veo.jobs import TERMINAL

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "veo-client/0.1"
# the server sends a comment every 15 s: a stream silent for longer than this is dead
SSE_READ_TIMEOUT = 60.0
DOWNLOAD_CHUNK = 1 << 20
MAX_REDIRECTS = 5

JobUpdate = Callable[[wire.JobOut], object]


# ---- errors ---------------------------------------------------------------------------------

class VeoClientError(Exception):
    """Everything the client raises derives from this."""


class ApiError(VeoClientError):
    """The API answered with an error: ``code`` and ``message`` are the API's own."""

    def __init__(self, code: str, message: str, status: int, details: Any = None, *,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details
        self.retry_after = retry_after

    @property
    def field(self) -> str | None:
        """The request field the error is about, when the API named one."""
        if isinstance(self.details, dict) and isinstance(self.details.get("field"), str):
            return str(self.details["field"])
        return None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
                f"status={self.status}, details={self.details!r})")


class BadRequest(ApiError):
    """400."""


class Unauthorized(ApiError):
    """401: no token, or a token the service does not know."""


class Forbidden(ApiError):
    """403."""


class NotFound(ApiError):
    """404: also what another user's ids answer."""


class Conflict(ApiError):
    """409: the job's state does not allow it, or an idempotency key was reused."""


class PayloadTooLarge(ApiError):
    """413."""


class InvalidRequest(ApiError):
    """422: ``field`` names the offending request field."""


class RateLimited(ApiError):
    """429 after the retries were spent (``retry_after`` says how long the API asked)."""


class ServerError(ApiError):
    """5xx after the retries were spent."""


class ConnectionFailed(VeoClientError):
    """The service could not be reached (after retries)."""


class UnexpectedResponse(VeoClientError):
    """The service answered something this client cannot read (wrong URL, proxy page)."""


class DownloadError(VeoClientError):
    """A downloaded file does not match the size or checksum the API announced."""


class JobFailed(VeoClientError):
    """``run`` waited for a job that ended ``failed`` or ``canceled``."""

    def __init__(self, job: wire.JobOut) -> None:
        err = job.error
        super().__init__(f"job {job.id} {job.status}" +
                         (f": {err.code}: {err.message}" if err else ""))
        self.job = job


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 422: InvalidRequest, 429: RateLimited,
}
_error_body = msgspec.json.Decoder(wire.ErrorBody)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(status: int, content: bytes, headers: Mapping[str, str],
                        reason: str = "") -> ApiError:
    retry_after = parse_retry_after(headers.get("retry-after"))
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    try:
        body = _error_body.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # not the API's error shape: a proxy or load balancer answered
        text = content.decode("utf-8", "replace").strip()
        message = (text[:200] if text and not text.lstrip().startswith("<")
                   else reason or "no details")
        return cls(f"http_{status}", message, status, retry_after=retry_after)
    return cls(body.error.code, body.error.message, status, body.error.details,
               retry_after=retry_after)


# ---- retries --------------------------------------------------------------------------------

# errors raised before the request left this machine: safe to repeat any request
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When to try a request again and how long to wait first.

    Idempotent requests (GET, DELETE, job creation with its Idempotency-Key) are repeated on
    429, 5xx and connection errors. Other POSTs (cancel, retry, select, ...) only when the
    request cannot have been acted on: the connection was never made, 429, or 503.
    """

    max_retries: int = 4
    backoff: float = 0.5  # the first wait; doubles per try
    max_backoff: float = 8.0
    # a longer Retry-After is not slept through: the error goes to the caller at once
    max_retry_after: float = 120.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    jitter: bool = True

    def backoff_delay(self, attempt: int) -> float:
        delay = min(self.max_backoff, self.backoff * 2.0 ** attempt)
        # jitter keeps many clients that failed together from retrying together
        return delay * (0.5 + random.random() / 2) if self.jitter else delay

    def delay(self, attempt: int, *, status: int | None = None,
              retry_after: float | None = None, error: BaseException | None = None,
              idempotent: bool = True) -> float | None:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 0), or None
        to give up and raise."""
        if attempt >= self.max_retries:
            return None
        if error is not None:
            if not isinstance(error, httpx.TransportError):
                return None
            if not idempotent and not isinstance(error, _NOT_SENT):
                return None
            return self.backoff_delay(attempt)
        if status is None or status not in self.retry_statuses:
            return None
        if not idempotent and status not in (429, 503):
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        return self.backoff_delay(attempt)


NO_RETRY = RetryPolicy(max_retries=0)


# ---- Server-Sent Events ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None


_EOL = re.compile(r"\r\n|\r|\n")


class SSEDecoder:
    """An incremental ``text/event-stream`` parser following the HTML standard's rules: lines
    end in CRLF, LF or CR (even split across chunks), comment lines (``:``) are keep-alives,
    ``data`` lines join with newlines, an event is dispatched on a blank line, and an event cut
    off by the end of the stream is dropped."""

    def __init__(self) -> None:
        self._buf = ""
        self._data: list[str] = []
        self._event = ""
        self._started = False
        self._skip_lf = False
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self.comments = 0

    def feed(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]
        self._skip_lf = False
        buf = self._buf + text
        events: list[ServerSentEvent] = []
        start = 0
        for m in _EOL.finditer(buf):
            if m.group() == "\r" and m.end() == len(buf):
                self._skip_lf = True  # its LF may be the first byte of the next chunk
            event = self._line(buf[start:m.start()])
            start = m.end()
            if event is not None:
                events.append(event)
        self._buf = buf[start:]
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(event=self._event or "message", data="\n".join(self._data),
                                id=self.last_event_id)
        self._data, self._event = [], ""
        return event


_job = msgspec.json.Decoder(wire.JobOut)


@dataclasses.dataclass(frozen=True)
class JobEvent:
    """One event of a job's stream: ``type`` is ``job`` (``job`` holds the job as it is now)
    or ``deleted``; other types a newer server may send come through with ``job`` None."""

    type: str
    job: wire.JobOut | None
    raw: ServerSentEvent

    @property
    def terminal(self) -> bool:
        return self.type == "deleted" or (self.job is not None and self.job.status in TERMINAL)


def job_event(event: ServerSentEvent) -> JobEvent:
    if event.event == "job":
        try:
            return JobEvent("job", _job.decode(event.data), event)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UnexpectedResponse(f"unreadable job event: {exc}") from None
    return JobEvent(event.event, None, event)


# ---- calls ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    decode: Callable[[bytes], T]
    body: bytes | None = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    idempotent: bool = True


def _decoder(t: type[T]) -> Callable[[bytes], T]:
    dec = msgspec.json.Decoder(t)

    def decode(content: bytes) -> T:
        try:
            return dec.decode(content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UnexpectedResponse(f"unexpected {t.__name__} from the service: {exc}") from None
    return decode


def _nothing(_content: bytes) -> None:
    return None


_enc = msgspec.json.Encoder()
_JSON = {"Content-Type": "application/json"}
_job_out = _decoder(wire.JobOut)
_job_list = _decoder(wire.JobList)
_upload = _decoder(wire.UploadOut)
_key = _decoder(wire.KeyOut)
_key_list = _decoder(wire.KeyList)
_models = _decoder(wire.ModelList)
_me = _decoder(wire.Me)
_health = _decoder(wire.Health)
_queue = _decoder(wire.QueueStatus)


def seg(value: str | int) -> str:
    """One path segment: an id can never reach another route."""
    return quote(str(value), safe="")


def job_path(job_id: str, *rest: str | int) -> str:
    return "/".join([f"/api/jobs/{seg(job_id)}", *(seg(r) for r in rest)])


def new_idempotency_key() -> str:
    return f"veo-client-{uuid.uuid4().hex}"


JobBody = wire.JobRequest | Mapping[str, Any]


def create_job(request: JobBody, idempotency_key: str | None) -> Call[wire.JobOut]:
    # one key per call, sent again on every retry of that call: a retried create never
    # makes a second job
    key = idempotency_key or new_idempotency_key()
    return Call("POST", "/api/jobs", _job_out, body=_enc.encode(request),
                headers={**_JSON, "Idempotency-Key": key})


def list_jobs(status: str | None, limit: int | None, cursor: str | None) -> Call[wire.JobList]:
    params = {k: str(v) for k, v in (("status", status), ("limit", limit), ("cursor", cursor))
              if v is not None}
    return Call("GET", "/api/jobs", _job_list, params=params)


def get_job(job_id: str) -> Call[wire.JobOut]:
    return Call("GET", job_path(job_id), _job_out)


def cancel_job(job_id: str) -> Call[wire.JobOut]:
    return Call("POST", job_path(job_id, "cancel"), _job_out, idempotent=False)


def retry_job(job_id: str) -> Call[wire.JobOut]:
    return Call("POST", job_path(job_id, "retry"), _job_out, idempotent=False)


def delete_job(job_id: str) -> Call[None]:
    return Call("DELETE", job_path(job_id), _nothing)


def select_variant(job_id: str, clip: int, variant: int) -> Call[wire.JobOut]:
    # choosing the same variant twice leaves the same state: safe to repeat
    return Call("POST", job_path(job_id, "clips", clip, "select"), _job_out,
                body=_enc.encode(wire.SelectIn(variant=variant)), headers=_JSON)


def redo_clip(job_id: str, clip: int, prompt: str | None) -> Call[wire.JobOut]:
    return Call("POST", job_path(job_id, "clips", clip, "redo"), _job_out,
                body=_enc.encode(wire.RedoIn(prompt=prompt)), headers=_JSON, idempotent=False)


def build_final(job_id: str, options: wire.FinalSpec | Mapping[str, Any] | None
                ) -> Call[wire.JobOut]:
    return Call("POST", job_path(job_id, "final"), _job_out,
                body=_enc.encode(options if options is not None else {}), headers=_JSON,
                idempotent=False)


def upload(data: bytes, filename: str, content_type: str | None) -> Call[wire.UploadOut]:
    ctype = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    # a repeated upload only leaves an unused copy behind: worth it on a flaky network
    return Call("POST", "/api/uploads", _upload, files={"file": (filename, data, ctype)})


def add_key(key: str, label: str | None) -> Call[wire.KeyOut]:
    return Call("POST", "/api/keys", _key, body=_enc.encode(wire.KeyIn(key=key, label=label)),
                headers=_JSON, idempotent=False)


def list_keys() -> Call[wire.KeyList]:
    return Call("GET", "/api/keys", _key_list)


def delete_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/api/keys/{seg(key_id)}", _nothing)


def models() -> Call[wire.ModelList]:
    return Call("GET", "/api/models", _models)


def me() -> Call[wire.Me]:
    return Call("GET", "/api/me", _me)


def health() -> Call[wire.Health]:
    return Call("GET", "/api/health", _health)


def queue_status() -> Call[wire.QueueStatus]:
    return Call("GET", "/api/flow/queue/status", _queue)


def output_filename(job_id: str, output: wire.OutputOut) -> str:
    return f"{job_id}-{output.clip}-{output.variant}.mp4"


# ---- auth -----------------------------------------------------------------------------------

def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port


class BearerAuth(httpx.Auth):
    """Sends the token to the API's own origin only, so a redirect to a presigned storage
    URL (or any other host) never carries it."""

    def __init__(self, token: str | None, base_url: httpx.URL) -> None:
        self._token = token
        self._origin = origin(base_url)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token and origin(request.url) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._token}"
        else:
            request.headers.pop("Authorization", None)
        yield request


def content_range_start(value: str | None) -> int | None:
    """The first byte of a ``Content-Range: bytes a-b/n`` answer."""
    m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    return int(m.group(1)) if m else None


def changed(prev: wire.JobOut | None, job: wire.JobOut) -> bool:
    """Whether a poll found something worth telling: status, progress, queue, clips."""
    if prev is None:
        return True
    return (prev.status, prev.progress, prev.queue_position, prev.paused_reason,
            [(c.status, c.progress) for c in prev.clips]) != (
        job.status, job.progress, job.queue_position, job.paused_reason,
        [(c.status, c.progress) for c in job.clips])


def is_terminal(job: wire.JobOut) -> bool:
    return job.status in TERMINAL


# ---- files ----------------------------------------------------------------------------------
# Blocking helpers: the async client runs them in a thread.

def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_matches(path: Path, sha256: str) -> bool:
    return path.is_file() and file_sha256(path) == sha256


def verify_download(part: Path, size: int | None, sha256: str | None, url: str) -> None:
    got = file_size(part)
    if size is not None and got != size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: got {got} bytes, expected {size}")
    if sha256 is not None and file_sha256(part) != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the checksum does not match")
