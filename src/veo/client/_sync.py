"""The blocking client: the same calls as :class:`AsyncClient`, for scripts and notebooks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

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


class Client:
    """The Veo service over HTTP, blocking. See :class:`AsyncClient` for the behaviour."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        base = httpx.URL(base_url or os.environ.get("VEO_URL") or core.DEFAULT_URL)
        self.token = token if token is not None else os.environ.get("VEO_TOKEN")
        self.retry = retry or RetryPolicy()
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=base, auth=core.BearerAuth(self.token, base), transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": core.USER_AGENT, "Accept": "application/json"})
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- transport ----------------------------------------------------------------------------

    def _send(self, call: core.Call[Any]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = self._http.request(call.method, call.path, content=call.body,
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
            self._sleep(delay)
            attempt += 1

    def _call(self, call: core.Call[T]) -> T:
        return call.decode(self._send(call).content)

    # ---- uploads and keys ---------------------------------------------------------------------

    def upload(self, file: str | os.PathLike[str] | bytes, *, filename: str | None = None,
               content_type: str | None = None) -> wire.UploadOut:
        if isinstance(file, bytes):
            data, name = file, filename or "image"
        else:
            path = Path(file)
            data, name = path.read_bytes(), filename or path.name
        return self._call(core.upload(data, name, content_type))

    def add_key(self, key: str, *, label: str | None = None) -> wire.KeyOut:
        return self._call(core.add_key(key, label))

    def list_keys(self) -> list[wire.KeyOut]:
        return self._call(core.list_keys()).data

    def delete_key(self, key_id: str) -> None:
        self._call(core.delete_key(key_id))

    # ---- jobs ---------------------------------------------------------------------------------

    def create_job(self, request: core.JobBody, *,
                   idempotency_key: str | None = None) -> wire.JobOut:
        return self._call(core.create_job(request, idempotency_key))

    def list_jobs_page(self, *, status: str | None = None, limit: int | None = None,
                       cursor: str | None = None) -> wire.JobList:
        return self._call(core.list_jobs(status, limit, cursor))

    def list_jobs(self, *, status: str | None = None, page_size: int = 50,
                  limit: int | None = None) -> Iterator[wire.JobOut]:
        cursor: str | None = None
        seen = 0
        while True:
            page = self.list_jobs_page(status=status, limit=page_size, cursor=cursor)
            for job in page.data:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield job
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_job(self, job_id: str) -> wire.JobOut:
        return self._call(core.get_job(job_id))

    def cancel_job(self, job_id: str) -> wire.JobOut:
        return self._call(core.cancel_job(job_id))

    def retry_job(self, job_id: str) -> wire.JobOut:
        return self._call(core.retry_job(job_id))

    def delete_job(self, job_id: str) -> None:
        self._call(core.delete_job(job_id))

    def select_variant(self, job_id: str, clip: int, variant: int) -> wire.JobOut:
        return self._call(core.select_variant(job_id, clip, variant))

    def redo_clip(self, job_id: str, clip: int, *, prompt: str | None = None) -> wire.JobOut:
        return self._call(core.redo_clip(job_id, clip, prompt))

    def build_final(self, job_id: str,
                    options: wire.FinalSpec | Mapping[str, Any] | None = None) -> wire.JobOut:
        return self._call(core.build_final(job_id, options))

    def models(self) -> wire.ModelList:
        """The model catalog, with what each model accepts and which one is the default."""
        return self._call(core.models())

    def me(self) -> wire.Me:
        return self._call(core.me())

    def health(self) -> wire.Health:
        return self._call(core.health())

    def queue_status(self) -> wire.QueueStatus:
        return self._call(core.queue_status())

    # ---- following a job ----------------------------------------------------------------------

    def events(self, job_id: str, *,
               reconnect: bool = True) -> Generator[JobEvent, None, None]:
        attempt = 0
        last_id: str | None = None
        timeout = httpx.Timeout(self._timeout, read=core.SSE_READ_TIMEOUT)
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            decoder = core.SSEDecoder()
            try:
                with self._http.stream("GET", core.job_path(job_id, "events"),
                                       headers=headers, timeout=timeout) as resp:
                    if not resp.is_success:
                        resp.read()
                        err = core.error_from_response(resp.status_code, resp.content,
                                                       resp.headers, resp.reason_phrase)
                        delay = self.retry.delay(attempt, status=resp.status_code,
                                                 retry_after=err.retry_after)
                        if delay is None:
                            raise err
                        self._sleep(delay)
                        attempt += 1
                        continue
                    ctype = resp.headers.get("content-type", "")
                    if not ctype.startswith("text/event-stream"):
                        raise UnexpectedResponse(f"the events route answered {ctype!r}")
                    for text in resp.iter_text():
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
                if not reconnect:
                    return
                delay = self.retry.delay(attempt, error=httpx.ReadError("stream closed"))
                if delay is None:
                    raise ConnectionFailed(f"event stream of {job_id} keeps closing")
                if decoder.retry_ms is not None:
                    delay = decoder.retry_ms / 1000
            last_id = decoder.last_event_id or last_id
            self._sleep(delay)
            attempt += 1

    def wait(self, job_id: str, *, on_update: JobUpdate | None = None,
             timeout: float | None = None, poll_interval: float = 2.0,
             use_events: bool = True) -> wire.JobOut:
        deadline = None if timeout is None else time.monotonic() + timeout
        last: wire.JobOut | None = None
        if use_events:
            stream = self.events(job_id)
            try:
                for event in stream:
                    if event.job is not None:
                        last = event.job
                        if on_update is not None:
                            on_update(event.job)
                        if core.is_terminal(event.job):
                            return event.job
                    elif event.type == "deleted":
                        break
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"job {job_id} did not finish in {timeout} s")
            except (Unauthorized, Forbidden):
                raise
            except VeoClientError:
                pass  # too many streams, a buffering proxy, a flaky link: poll instead
            finally:
                stream.close()
        while True:
            job = self.get_job(job_id)
            if core.changed(last, job) and on_update is not None:
                on_update(job)
            last = job
            if core.is_terminal(job):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not finish in {timeout} s")
            self._sleep(poll_interval)

    def run(self, request: core.JobBody, *, idempotency_key: str | None = None,
            on_update: JobUpdate | None = None, timeout: float | None = None) -> wire.JobOut:
        job = self.create_job(request, idempotency_key=idempotency_key)
        if on_update is not None:
            on_update(job)
        done = self.wait(job.id, on_update=on_update, timeout=timeout)
        if done.status != "succeeded":
            raise JobFailed(done)
        return done

    # ---- downloads ----------------------------------------------------------------------------

    def download(self, url: str, dest: str | os.PathLike[str], *, sha256: str | None = None,
                 size: int | None = None) -> Path:
        target = Path(dest)
        if sha256 is not None and core.file_matches(target, sha256):
            return target
        part = target.with_name(target.name + ".part")
        target.parent.mkdir(parents=True, exist_ok=True)
        attempt = 0
        timeout = httpx.Timeout(self._timeout, read=core.SSE_READ_TIMEOUT)
        while True:
            have = core.file_size(part)
            headers = {"Accept": "*/*"}
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                with self._http.stream("GET", url, headers=headers, timeout=timeout,
                                       follow_redirects=True) as resp:
                    if resp.status_code == 416 and have:
                        part.unlink()
                        continue
                    if not resp.is_success:
                        resp.read()
                        err = core.error_from_response(resp.status_code, resp.content,
                                                       resp.headers, resp.reason_phrase)
                        delay = self.retry.delay(attempt, status=resp.status_code,
                                                 retry_after=err.retry_after)
                        if delay is None:
                            raise err
                    else:
                        resumed = (resp.status_code == 206 and core.content_range_start(
                            resp.headers.get("content-range")) == have)
                        with part.open("ab" if resumed else "wb") as fh:
                            for chunk in resp.iter_bytes():
                                fh.write(chunk)
                        break
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt, error=exc)
                if delay is None:
                    raise ConnectionFailed(f"download of {url} failed: {exc}") from exc
            self._sleep(delay)
            attempt += 1
        core.verify_download(part, size, sha256, url)
        os.replace(part, target)
        return target

    def download_output(self, job_id: str, output: wire.OutputOut | str,
                        dest: str | os.PathLike[str]) -> Path:
        if isinstance(output, str):
            return self.download(core.job_path(job_id, "outputs", output), dest)
        return self.download(core.job_path(job_id, "outputs", output.id), dest,
                             sha256=output.sha256, size=output.size)

    def download_poster(self, job_id: str, output_id: str,
                        dest: str | os.PathLike[str]) -> Path:
        return self.download(core.job_path(job_id, "outputs", output_id, "poster"), dest)

    def download_final_poster(self, job_id: str, dest: str | os.PathLike[str]) -> Path:
        return self.download(core.job_path(job_id, "final", "poster"), dest)

    def download_final(self, job_id: str, dest: str | os.PathLike[str], *,
                       final: wire.FinalOut | None = None) -> Path:
        return self.download(core.job_path(job_id, "final"), dest,
                             sha256=final.sha256 if final else None,
                             size=final.size if final else None)

    def download_job(self, job: wire.JobOut, out_dir: str | os.PathLike[str], *,
                     final: bool = True,
                     name: Callable[[wire.OutputOut], str] | None = None) -> list[Path]:
        folder = Path(out_dir)
        paths = [self.download_output(
            job.id, out, folder / (name(out) if name else core.output_filename(job.id, out)))
            for out in job.outputs]
        if final and job.final is not None and job.final.status == "succeeded":
            paths.append(self.download_final(job.id, folder / f"{job.id}-final.mp4",
                                             final=job.final))
        return paths
