"""The asyncio client."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

from veo import wire
from veo.client import _core as core
from veo.client._core import (
    ConnectionFailed,
    Forbidden,
    JobEvent,
    JobFailed,
    JobUpdate,
    RetryPolicy,
    Unauthorized,
    UnexpectedResponse,
    VeoClientError,
)

T = TypeVar("T")


class AsyncClient:
    """The Veo service over HTTP, for asyncio programs.

    ``base_url`` and ``token`` default to ``VEO_URL`` and ``VEO_TOKEN``. Requests are retried
    according to ``retry``; errors the API answers raise :class:`ApiError` subclasses that carry
    its ``code``, ``message``, ``status`` and ``details``.
    """

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        base = httpx.URL(base_url or os.environ.get("VEO_URL") or core.DEFAULT_URL)
        self.token = token if token is not None else os.environ.get("VEO_TOKEN")
        self.retry = retry or RetryPolicy()
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base, auth=core.BearerAuth(self.token, base), transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": core.USER_AGENT, "Accept": "application/json"})
        # tests replace this to observe back-off without waiting for it
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- transport ----------------------------------------------------------------------------

    async def _send(self, call: core.Call[Any]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = await self._http.request(call.method, call.path, content=call.body,
                                                params=call.params, headers=call.headers,
                                                files=call.files)
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt, error=exc, idempotent=call.idempotent)
                if delay is None:
                    raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc
            else:
                if resp.is_success:
                    return resp
                err = core.error_from_response(resp.status_code, resp.content, resp.headers,
                                               resp.reason_phrase)
                delay = self.retry.delay(attempt, status=resp.status_code,
                                         retry_after=err.retry_after, idempotent=call.idempotent)
                if delay is None:
                    raise err
            await self._sleep(delay)
            attempt += 1

    async def _call(self, call: core.Call[T]) -> T:
        resp = await self._send(call)
        return call.decode(resp.content)

    # ---- uploads and keys ---------------------------------------------------------------------

    async def upload(self, file: str | os.PathLike[str] | bytes, *, filename: str | None = None,
                     content_type: str | None = None) -> wire.UploadOut:
        """Upload an image (a path or its bytes) for use as a frame or reference image."""
        if isinstance(file, bytes):
            data, name = file, filename or "image"
        else:
            path = Path(file)
            data, name = await asyncio.to_thread(path.read_bytes), filename or path.name
        return await self._call(core.upload(data, name, content_type))

    async def add_key(self, key: str, *, label: str | None = None) -> wire.KeyOut:
        return await self._call(core.add_key(key, label))

    async def list_keys(self) -> list[wire.KeyOut]:
        return (await self._call(core.list_keys())).data

    async def delete_key(self, key_id: str) -> None:
        await self._call(core.delete_key(key_id))

    # ---- jobs ---------------------------------------------------------------------------------

    async def create_job(self, request: core.JobBody, *,
                         idempotency_key: str | None = None) -> wire.JobOut:
        """Submit a job. Without ``idempotency_key`` one is made for this call, so its retries
        never create a second job; pass your own to make repeated calls safe too."""
        return await self._call(core.create_job(request, idempotency_key))

    async def list_jobs_page(self, *, status: str | None = None, limit: int | None = None,
                             cursor: str | None = None) -> wire.JobList:
        return await self._call(core.list_jobs(status, limit, cursor))

    async def list_jobs(self, *, status: str | None = None, page_size: int = 50,
                        limit: int | None = None) -> AsyncIterator[wire.JobOut]:
        """The caller's jobs, newest first, fetched a page at a time as you iterate."""
        cursor: str | None = None
        seen = 0
        while True:
            page = await self.list_jobs_page(status=status, limit=page_size, cursor=cursor)
            for job in page.data:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield job
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor

    async def get_job(self, job_id: str) -> wire.JobOut:
        return await self._call(core.get_job(job_id))

    async def cancel_job(self, job_id: str) -> wire.JobOut:
        return await self._call(core.cancel_job(job_id))

    async def retry_job(self, job_id: str) -> wire.JobOut:
        return await self._call(core.retry_job(job_id))

    async def delete_job(self, job_id: str) -> None:
        await self._call(core.delete_job(job_id))

    async def select_variant(self, job_id: str, clip: int, variant: int) -> wire.JobOut:
        """Choose which variant of a clip the final video uses."""
        return await self._call(core.select_variant(job_id, clip, variant))

    async def redo_clip(self, job_id: str, clip: int, *,
                        prompt: str | None = None) -> wire.JobOut:
        """Generate one clip of a finished job again, with a new prompt or the old one."""
        return await self._call(core.redo_clip(job_id, clip, prompt))

    async def build_final(self, job_id: str,
                          options: wire.FinalSpec | Mapping[str, Any] | None = None
                          ) -> wire.JobOut:
        """Build (or rebuild) the job's stitched video."""
        return await self._call(core.build_final(job_id, options))

    async def models(self) -> wire.ModelList:
        """The model catalog, with what each model accepts and which one is the default."""
        return await self._call(core.models())

    async def me(self) -> wire.Me:
        return await self._call(core.me())

    async def health(self) -> wire.Health:
        return await self._call(core.health())

    async def queue_status(self) -> wire.QueueStatus:
        return await self._call(core.queue_status())

    # ---- following a job ----------------------------------------------------------------------

    async def events(self, job_id: str, *,
                     reconnect: bool = True) -> AsyncGenerator[JobEvent, None]:
        """The job's Server-Sent Events until it ends. A stream that drops is reopened (the
        service starts every stream with the job as it is now, so nothing is lost)."""
        attempt = 0
        last_id: str | None = None
        timeout = httpx.Timeout(self._timeout, read=core.SSE_READ_TIMEOUT)
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            decoder = core.SSEDecoder()
            try:
                async with self._http.stream("GET", core.job_path(job_id, "events"),
                                             headers=headers, timeout=timeout) as resp:
                    if not resp.is_success:
                        await resp.aread()
                        err = core.error_from_response(resp.status_code, resp.content,
                                                       resp.headers, resp.reason_phrase)
                        delay = self.retry.delay(attempt, status=resp.status_code,
                                                 retry_after=err.retry_after)
                        if delay is None:
                            raise err
                        await self._sleep(delay)
                        attempt += 1
                        continue
                    ctype = resp.headers.get("content-type", "")
                    if not ctype.startswith("text/event-stream"):
                        raise UnexpectedResponse(f"the events route answered {ctype!r}")
                    async for text in resp.aiter_text():
                        for raw in decoder.feed(text):
                            attempt = 0
                            event = core.job_event(raw)
                            yield event
                            if event.terminal:
                                return
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt, error=exc) if reconnect else None
                if delay is None:
                    raise ConnectionFailed(f"event stream of {job_id} lost: {exc}") from exc
            else:
                # the stream closed before the job ended (a restart, a proxy's time limit)
                if not reconnect:
                    return
                delay = self.retry.delay(attempt, error=httpx.ReadError("stream closed"))
                if delay is None:
                    raise ConnectionFailed(f"event stream of {job_id} keeps closing")
                if decoder.retry_ms is not None:
                    delay = decoder.retry_ms / 1000
            last_id = decoder.last_event_id or last_id
            await self._sleep(delay)
            attempt += 1

    async def wait(self, job_id: str, *, on_update: JobUpdate | None = None,
                   poll_interval: float = 2.0, use_events: bool = True) -> wire.JobOut:
        """Follow a job until it ends and return it. ``on_update`` sees every change. Events
        are used when the service streams them; otherwise (or when streams fail) it polls.
        Bound it with ``asyncio.timeout`` if needed."""
        last: wire.JobOut | None = None
        if use_events:
            try:
                async with contextlib.aclosing(self.events(job_id)) as stream:
                    async for event in stream:
                        if event.job is not None:
                            last = event.job
                            if on_update is not None:
                                on_update(event.job)
                            if core.is_terminal(event.job):
                                return event.job
                        elif event.type == "deleted":
                            break
            except (Unauthorized, Forbidden):
                raise
            except VeoClientError:
                pass  # too many streams, a buffering proxy, a flaky link: poll instead
        while True:
            job = await self.get_job(job_id)
            if core.changed(last, job) and on_update is not None:
                on_update(job)
            last = job
            if core.is_terminal(job):
                return job
            await self._sleep(poll_interval)

    async def run(self, request: core.JobBody, *, idempotency_key: str | None = None,
                  on_update: JobUpdate | None = None) -> wire.JobOut:
        """Submit a job and wait for it; raises :class:`JobFailed` unless it succeeded."""
        job = await self.create_job(request, idempotency_key=idempotency_key)
        if on_update is not None:
            on_update(job)
        done = await self.wait(job.id, on_update=on_update)
        if done.status != "succeeded":
            raise JobFailed(done)
        return done

    # ---- downloads ----------------------------------------------------------------------------

    async def download(self, url: str, dest: str | os.PathLike[str], *,
                       sha256: str | None = None, size: int | None = None) -> Path:
        """Stream ``url`` (a path of the API, or a full URL) into ``dest``, following
        redirects to presigned storage URLs, resuming a partial file and checking the
        announced size and checksum. A file already there with that checksum is kept."""
        target = Path(dest)
        if sha256 is not None and await asyncio.to_thread(core.file_matches, target, sha256):
            return target
        part = target.with_name(target.name + ".part")
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        attempt = 0
        timeout = httpx.Timeout(self._timeout, read=core.SSE_READ_TIMEOUT)
        while True:
            have = await asyncio.to_thread(core.file_size, part)
            headers = {"Accept": "*/*"}
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                async with self._http.stream("GET", url, headers=headers, timeout=timeout,
                                             follow_redirects=True) as resp:
                    if resp.status_code == 416 and have:
                        await asyncio.to_thread(part.unlink)  # stale partial file: start over
                        continue
                    if not resp.is_success:
                        await resp.aread()
                        err = core.error_from_response(resp.status_code, resp.content,
                                                       resp.headers, resp.reason_phrase)
                        delay = self.retry.delay(attempt, status=resp.status_code,
                                                 retry_after=err.retry_after)
                        if delay is None:
                            raise err
                    else:
                        resumed = (resp.status_code == 206 and core.content_range_start(
                            resp.headers.get("content-range")) == have)
                        await self._write(resp.aiter_bytes(), part,
                                          append=resumed)
                        break
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt, error=exc)
                if delay is None:
                    raise ConnectionFailed(f"download of {url} failed: {exc}") from exc
            await self._sleep(delay)
            attempt += 1
        await asyncio.to_thread(core.verify_download, part, size, sha256, url)
        await asyncio.to_thread(os.replace, part, target)
        return target

    @staticmethod
    async def _write(chunks: AsyncIterator[bytes], part: Path, *, append: bool) -> None:
        fh: IO[bytes] = await asyncio.to_thread(part.open, "ab" if append else "wb")
        buf = bytearray()
        try:
            async for chunk in chunks:
                buf += chunk
                if len(buf) >= core.DOWNLOAD_CHUNK:
                    await asyncio.to_thread(fh.write, bytes(buf))
                    buf.clear()
        finally:
            # what arrived before a dropped connection is kept: the retry resumes after it
            await asyncio.to_thread(_flush_close, fh, bytes(buf))

    async def download_output(self, job_id: str, output: wire.OutputOut | str,
                              dest: str | os.PathLike[str]) -> Path:
        """One output video; given the output object, its size and checksum are checked."""
        if isinstance(output, str):
            return await self.download(core.job_path(job_id, "outputs", output), dest)
        return await self.download(core.job_path(job_id, "outputs", output.id), dest,
                                   sha256=output.sha256, size=output.size)

    async def download_poster(self, job_id: str, output_id: str,
                              dest: str | os.PathLike[str]) -> Path:
        return await self.download(core.job_path(job_id, "outputs", output_id, "poster"), dest)

    async def download_final_poster(self, job_id: str, dest: str | os.PathLike[str]) -> Path:
        return await self.download(core.job_path(job_id, "final", "poster"), dest)

    async def download_final(self, job_id: str, dest: str | os.PathLike[str], *,
                             final: wire.FinalOut | None = None) -> Path:
        """The stitched video; pass the job's ``final`` to have it checked."""
        return await self.download(core.job_path(job_id, "final"), dest,
                                   sha256=final.sha256 if final else None,
                                   size=final.size if final else None)

    async def download_job(self, job: wire.JobOut, out_dir: str | os.PathLike[str], *,
                           final: bool = True,
                           name: Callable[[wire.OutputOut], str] | None = None) -> list[Path]:
        """Every output of a job (and its final video when there is one and ``final``) into
        ``out_dir``, named ``{job}-{clip}-{variant}.mp4`` and ``{job}-final.mp4`` unless
        ``name`` says otherwise. Returns the paths in output order."""
        folder = Path(out_dir)
        paths = [await self.download_output(
            job.id, out, folder / (name(out) if name else core.output_filename(job.id, out)))
            for out in job.outputs]
        if final and job.final is not None and job.final.status == "succeeded":
            paths.append(await self.download_final(job.id, folder / f"{job.id}-final.mp4",
                                                   final=job.final))
        return paths



def _flush_close(fh: IO[bytes], rest: bytes) -> None:
    try:
        fh.write(rest)
    finally:
        fh.close()
