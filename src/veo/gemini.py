"""The Gemini API adapter: google-genai 2.x (``client.aio`` only) plus a streaming download.

Foreign errors are translated here, at the edge: 429 becomes a cooling key, 400
``API_KEY_INVALID`` or 403 an invalid key, other 4xx a non-retryable failure, 5xx and
transport errors a retryable one (research/veo-api.md §2.4).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from veo import logs
from veo.config import Settings
from veo.errors import GenerationFailed, KeyProblem, VeoError

log = logs.get_logger("veo.gemini")

API_VERSION = "v1beta"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
REQUEST_TIMEOUT_MS = 60_000  # google-genai has no timeout by default (research §3, §6)
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=120.0)
_FILE_ID = re.compile(r"files/([a-z0-9]+)")


def translate(exc: BaseException) -> VeoError:
    """Map a google-genai / transport error to ours."""
    if isinstance(exc, VeoError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code or 0)
        text = str(exc.message or exc.status or "")[:300]
        details = exc.details if isinstance(exc.details, dict) else {}
        reasons = {d.get("reason") for d in details.get("error", {}).get("details", [])
                   if isinstance(d, dict)}
        if code == 429:
            return KeyProblem(f"429 RESOURCE_EXHAUSTED: {text}", invalid=False,
                              retry_after=_retry_delay(details))
        if code == 403 or "API_KEY_INVALID" in reasons or (code == 401):
            return KeyProblem(f"{code} {exc.status}: {text}", invalid=True)
        if 400 <= code < 500:
            return GenerationFailed(f"the Gemini API refused the request: {text}",
                                    code="invalid_argument", retryable=False)
        return GenerationFailed(f"the Gemini API failed ({code}): {text}", code="server_error",
                                retryable=True)
    if isinstance(exc, TimeoutError | httpx.TransportError | OSError):
        return GenerationFailed(f"could not reach the Gemini API: {type(exc).__name__}",
                                code="network_error", retryable=True)
    import aiohttp

    if isinstance(exc, aiohttp.ClientError):
        return GenerationFailed(f"could not reach the Gemini API: {type(exc).__name__}",
                                code="network_error", retryable=True)
    return GenerationFailed(f"unexpected error from the Gemini API: {type(exc).__name__}",
                            code="internal", retryable=True)


def _retry_delay(details: dict[str, Any]) -> float | None:
    """The ``google.rpc.RetryInfo`` delay of a 429 body, in seconds, if it carries one."""
    for d in details.get("error", {}).get("details", []):
        if isinstance(d, dict) and str(d.get("@type", "")).endswith("RetryInfo"):
            try:
                return float(str(d.get("retryDelay", "")).rstrip("s"))
            except ValueError:
                return None
    return None


class Gemini:
    """One google-genai client per key, held for the process's life (research §6: a client
    nothing references can be collected mid-call and close its own session)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = (settings.gemini_base_url or DEFAULT_BASE_URL).rstrip("/")
        self._clients: dict[str, genai.Client] = {}
        self._http = httpx.AsyncClient(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True)

    def client(self, key: str) -> genai.Client:
        c = self._clients.get(key)
        if c is None:
            logs.register_secret(key)
            c = genai.Client(api_key=key, http_options=types.HttpOptions(
                base_url=self.base_url, api_version=API_VERSION, timeout=REQUEST_TIMEOUT_MS))
            self._clients[key] = c
        return c

    async def validate_key(self, key: str) -> tuple[bool, str] | None:
        """Check a key with a metadata call that spends no generation quota."""
        try:
            await self.client(key).aio.models.get(model=self.settings.default_model)
        except Exception as exc:
            err = translate(exc)
            if isinstance(err, KeyProblem) and err.invalid:
                return True, err.message
            log.info("api.key_unverified", reason=err.code)
        return None

    async def submit(self, key: str, model: str, source: types.GenerateVideosSource,
                     config: types.GenerateVideosConfig) -> str:
        try:
            op = await self.client(key).aio.models.generate_videos(
                model=model, source=source, config=config)
        except Exception as exc:
            raise translate(exc) from exc
        if not op.name:
            raise GenerationFailed("the Gemini API returned an operation without a name",
                                   code="server_error", retryable=True)
        return op.name

    async def poll(self, key: str, name: str) -> types.GenerateVideosOperation:
        try:
            return await self.client(key).aio.operations.get(
                types.GenerateVideosOperation(name=name))  # type: ignore[call-arg]
        except Exception as exc:
            raise translate(exc) from exc

    async def download(self, key: str, video: types.Video) -> AsyncIterator[bytes]:
        """Stream a generated video (the SDK's ``files.download`` would buffer it whole)."""
        if video.video_bytes:
            yield video.video_bytes
            return
        match = _FILE_ID.search(video.uri or "")
        if match is None:
            raise GenerationFailed(f"unexpected video uri {video.uri!r}", code="server_error",
                                   retryable=True)
        url = f"{self.base_url}/{API_VERSION}/files/{match.group(1)}:download"
        try:
            async with self._http.stream("GET", url, params={"alt": "media"},
                                         headers={"x-goog-api-key": key}) as resp:
                if resp.status_code != 200:
                    body = (await resp.aread())[:300].decode("utf-8", "replace")
                    raise _download_error(resp.status_code, body)
                async for chunk in resp.aiter_bytes(256 * 1024):
                    yield chunk
        except VeoError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        for c in self._clients.values():
            try:
                await c.aio.aclose()
            except Exception as exc:  # closing is best effort
                log.debug("gemini.close_failed", error=type(exc).__name__)
        self._clients.clear()
        await self._http.aclose()


def _download_error(status: int, body: str) -> VeoError:
    if status == 429:
        return KeyProblem(f"429 while downloading: {body}", invalid=False)
    if status in (401, 403) or "API_KEY_INVALID" in body:
        return KeyProblem(f"{status} while downloading: {body}", invalid=True)
    return GenerationFailed(f"download failed with HTTP {status}", code="download_failed",
                            retryable=status >= 500 or status == 404)

