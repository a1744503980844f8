"""The user commands of ``veo``: generate, jobs, batch. They talk to a running service over
HTTP with :mod:`veo.client` (``VEO_URL``, ``VEO_TOKEN`` or ``--url``/``--token``) and need no
database or secret of their own.

Progress goes to stderr: bars redrawn in place on a terminal, one line per change elsewhere.
Results go to stdout: file paths and tables for people, one JSON document with ``--json``.
Exit codes say what happened (``EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import string
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import msgspec

from veo import wire
from veo.client import (
    ApiError,
    AsyncClient,
    Conflict,
    ConnectionFailed,
    DownloadError,
    NotFound,
    UnexpectedResponse,
    VeoClientError,
)
from veo.client._core import DEFAULT_URL, file_sha256
from veo.jobs import TERMINAL

COMMANDS = frozenset({"generate", "jobs", "batch"})

OK = 0
JOB_FAILED = 1  # a job (or a batch row) failed, was canceled or was refused
USAGE = 2  # bad arguments or a bad input file (argparse exits 2 as well)
REFUSED = 3  # the API refused the request: 4xx other than authentication
AUTH = 4  # no token, or the service did not accept it
UNAVAILABLE = 5  # the service could not be reached, or failed (5xx) after retries
INTERRUPTED = 130  # Ctrl-C
EXIT_CODES = {OK: "done", JOB_FAILED: "a job failed or was canceled", USAGE: "bad usage or input",
              REFUSED: "the API refused the request", AUTH: "missing or rejected token",
              UNAVAILABLE: "the service is unreachable or failing", INTERRUPTED: "interrupted"}

PAUSED = {
    "api_keys_exhausted": "every API key is cooling down; it resumes by itself",
    "flow_needs_auth": "Flow needs a new login (veo-auth export --upload)",
    "flow_rate_limited": "the Flow account is cooling down; it resumes by itself",
}


class UsageError(Exception):
    """Bad arguments or input detected here, before anything was sent."""


# ---- arguments ------------------------------------------------------------------------------

def add_parsers(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"service URL (default: $VEO_URL or {DEFAULT_URL})")
    common.add_argument("--token", help="bearer token (default: $VEO_TOKEN)")
    common.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout, for scripts")
    codes = "exit codes: " + ", ".join(f"{c} {m}" for c, m in EXIT_CODES.items())

    gen = sub.add_parser("generate", parents=[common], epilog=codes,
                         help="make a video: upload frames, submit, follow, download",
                         description="Submit one job, show its progress, download its videos.")
    gen.add_argument("prompt")
    gen.add_argument("--first-frame", metavar="IMAGE", type=Path)
    gen.add_argument("--last-frame", metavar="IMAGE", type=Path)
    gen.add_argument("--ref", metavar="IMAGE", type=Path, action="append", default=[],
                     help="a reference image (repeat for up to 3)")
    gen.add_argument("--model")
    gen.add_argument("--variants", type=int, metavar="N", help="videos to make (1-4)")
    gen.add_argument("--aspect", choices=["16:9", "9:16"])
    gen.add_argument("--duration", type=int, metavar="SECONDS")
    gen.add_argument("--resolution")
    gen.add_argument("--negative-prompt")
    gen.add_argument("--backend", choices=["auto", "api", "flow"])
    gen.add_argument("--final", action="store_true",
                     help="also build and download the stitched final video")
    gen.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                     help="where the videos go (default: the current directory)")
    gen.add_argument("--idempotency-key", help="make a repeated command reuse the first job")
    gen.add_argument("--no-download", action="store_true", help="wait, but download nothing")

    jobs = sub.add_parser("jobs", help="list, show, cancel, retry, download, delete your jobs")
    jsub = jobs.add_subparsers(dest="jcmd", required=True)
    lst = jsub.add_parser("list", parents=[common], epilog=codes, help="your jobs, newest first")
    lst.add_argument("--status", choices=["queued", "running", "paused", "succeeded", "failed",
                                          "canceled"])
    lst.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    lst.add_argument("--all", action="store_true", help="every job, page after page")
    for name, text in (("show", "one job with its clips and outputs"),
                       ("cancel", "cancel a queued, running or paused job"),
                       ("retry", "run a failed or canceled job again"),
                       ("delete", "delete a job and its videos")):
        p = jsub.add_parser(name, parents=[common], epilog=codes, help=text)
        p.add_argument("job_id")
    dl = jsub.add_parser("download", parents=[common], epilog=codes,
                         help="download a job's videos (waiting for it by default)")
    dl.add_argument("job_id")
    dl.add_argument("--out", type=Path, default=Path("."), metavar="DIR")
    dl.add_argument("--no-wait", action="store_true",
                    help="fail instead of waiting when the job has not finished")
    dl.add_argument("--no-final", action="store_true", help="skip the stitched final video")

    bat = sub.add_parser(
        "batch", parents=[common], epilog=codes,
        help="one job per row of a CSV or JSONL file; rerun to resume",
        description="Each row has a 'prompt' and any job field (model, number_of_videos, "
        "first_frame (a path or an upload id), ...); {column} in the prompt is filled from the "
        "row. Rerunning the same file submits nothing twice and downloads what is missing.")
    bat.add_argument("file", type=Path)
    bat.add_argument("--out", type=Path, metavar="DIR",
                     help="where videos, results.csv and the resume state go "
                     "(default: FILE's name + '-videos')")
    bat.add_argument("--results", type=Path, metavar="CSV",
                     help="results file (default: DIR/results.csv)")
    bat.add_argument("--name", metavar="TEMPLATE",
                     help="output name from the row, e.g. '{id}-{style}' (default: rowNNN)")
    bat.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help="a job field for every row that does not set it")
    bat.add_argument("--concurrency", type=int, default=4, metavar="N",
                     help="uploads, submissions and downloads at once (default 4)")
    bat.add_argument("--poll", type=float, default=2.0, metavar="SECONDS",
                     help="how often running jobs are checked (default 2)")
    bat.add_argument("--retry-failed", action="store_true",
                     help="retry rows whose job failed or was canceled")
    bat.add_argument("--no-wait", action="store_true",
                     help="submit and exit; rerun later to download")


def run(args: argparse.Namespace) -> int:
    out = Output(json_mode=args.json)
    url = args.url or os.environ.get("VEO_URL") or DEFAULT_URL
    token = args.token or os.environ.get("VEO_TOKEN")
    if not token:
        return out.fail(AUTH, "no token: set VEO_TOKEN or pass --token "
                        "(an operator makes one with `veo users create NAME`)")
    handler: Callable[[AsyncClient, argparse.Namespace, Output], Awaitable[int]]
    if args.cmd == "generate":
        handler = _generate
    elif args.cmd == "batch":
        handler = _batch
    else:
        handler = _JOBS[args.jcmd]

    async def main() -> int:
        async with AsyncClient(url, token) as client:
            return await handler(client, args, out)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        out.term.close()
        return out.fail(INTERRUPTED, "interrupted")
    except UsageError as exc:
        return out.fail(USAGE, str(exc))
    except VeoClientError as exc:
        return out.error(exc, url=url)
    finally:
        out.term.close()


# ---- output ---------------------------------------------------------------------------------

class Term:
    """Progress for people on stderr: on a terminal a block of lines redrawn in place, with
    permanent lines logged above it; elsewhere only the logged lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty() and os.environ.get("TERM") != "dumb"
        enc = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        self.fill, self.empty = ("█", "░") if enc in ("utf8", "utf16") else ("#", "-")
        self._lines = 0
        self._drawn: list[str] = []
        self._cursor_hidden = False

    def width(self) -> int:
        return shutil.get_terminal_size((80, 24)).columns

    def height(self) -> int:
        return shutil.get_terminal_size((80, 24)).lines

    def bar(self, pct: int, width: int) -> str:
        filled = max(0, min(width, round(pct * width / 100)))
        return self.fill * filled + self.empty * (width - filled)

    def draw(self, lines: list[str]) -> None:
        if not self.live:
            return
        width = self.width() - 1  # a line that fills the row would wrap and break the redraw
        lines = [line[:width] for line in lines]
        if self._lines and lines == self._drawn:
            return
        self._drawn = lines
        parts = []
        if not self._cursor_hidden:
            parts.append("\x1b[?25l")
            self._cursor_hidden = True
        if self._lines:
            parts.append(f"\x1b[{self._lines}F")
        parts.extend(f"\x1b[2K{line}\n" for line in lines)
        parts.append("\x1b[J")
        self._lines = len(lines)
        self._write("".join(parts))

    def clear(self) -> None:
        if self.live and self._lines:
            self._write(f"\x1b[{self._lines}F\x1b[J")
        self._lines = 0

    def log(self, text: str) -> None:
        """A line that stays, above the live block (which the caller redraws)."""
        self.clear()
        self._write(text + "\n")

    def keep(self) -> None:
        """Leave the live block on screen as it is; what follows goes below it."""
        self._lines = 0

    def close(self) -> None:
        self.keep()
        if self._cursor_hidden:
            self._write("\x1b[?25h")
            self._cursor_hidden = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


class Output:
    def __init__(self, *, json_mode: bool, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> None:
        self.json = json_mode
        self.stdout = stdout or sys.stdout
        self.term = Term(stderr or sys.stderr)

    def info(self, text: str) -> None:
        """A message for people (stderr), kept out of the way of --json output."""
        if not self.json or self.term.live:
            self.term.log(text)

    def result(self, text: str) -> None:
        self.term.clear()
        print(text, file=self.stdout, flush=True)

    def document(self, value: Any) -> None:
        self.result(msgspec.json.encode(value).decode())

    def fail(self, code: int, message: str, *, api: Mapping[str, Any] | None = None) -> int:
        self.term.clear()
        self.term.close()
        if self.json:
            self.document({"error": dict(api or {"code": EXIT_CODES[code].replace(" ", "_"),
                                                  "message": message}), "exit_code": code})
        print(f"veo: {message}", file=self.term.stream, flush=True)
        return code

    def error(self, exc: VeoClientError, *, url: str) -> int:
        if isinstance(exc, ApiError):
            message = f"{exc.message} ({exc.status} {exc.code})"
            if exc.field and exc.field not in exc.message:
                message += f" [field: {exc.field}]"
            if exc.status == 401:
                message += ": check VEO_TOKEN or --token"
            code = (AUTH if exc.status in (401, 403) else
                    UNAVAILABLE if exc.status >= 500 or exc.status == 429 else REFUSED)
            api = {"code": exc.code, "message": exc.message, "status": exc.status,
                   "details": exc.details}
            return self.fail(code, message, api=api)
        if isinstance(exc, ConnectionFailed):
            return self.fail(UNAVAILABLE, f"{exc} (is the service running? check VEO_URL)",
                             api={"code": "connection_failed", "message": str(exc)})
        if isinstance(exc, UnexpectedResponse):
            return self.fail(UNAVAILABLE, f"{exc} (is {url} the Veo service?)",
                             api={"code": "unexpected_response", "message": str(exc)})
        return self.fail(UNAVAILABLE, str(exc), api={"code": "client_error",
                                                      "message": str(exc)})


def _elapsed(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def status_text(job: wire.JobOut) -> str:
    if job.status == "queued":
        ahead = job.queue_position  # jobs queued before this one
        return "queued" + ("" if ahead is None else " (next in line)" if ahead == 0
                           else f" ({ahead} ahead)")
    if job.status == "paused":
        reason = job.paused_reason or ""
        return f"paused: {PAUSED.get(reason, reason)}"
    if job.status == "running" and len(job.clips) > 1:
        done = sum(c.status == "succeeded" for c in job.clips)
        return f"running ({done}/{len(job.clips)} clips)"
    if job.status == "failed" and job.error is not None:
        return f"failed: {job.error.code}"
    return job.status


class JobView:
    """One job's progress: a bar for the job and one per clip on a terminal, a line per
    change elsewhere."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.term = out.term
        self.job: wire.JobOut | None = None
        self.started = time.monotonic()
        self.held = False
        self.note = ""
        self._said: tuple[Any, ...] | None = None
        self._clips_said: dict[int, str] = {}

    def update(self, job: wire.JobOut) -> None:
        self.job = job
        if self.term.live:
            self.render()
        elif not self.out.json:
            self._lines(job)

    def render(self) -> None:
        if self.held or self.job is None or not self.term.live:
            return
        self.term.draw(self.frame(self.job))

    def frame(self, job: wire.JobOut) -> list[str]:
        width = self.term.width()
        bar_w = max(10, min(40, width - 60))
        pct = 100 if job.status == "succeeded" else job.progress
        # the clock before the status: a narrow terminal cuts the end of the line
        head = (f"{job.id}  {self.term.bar(pct, bar_w)} {pct:3d}%  "
                f"{_elapsed(time.monotonic() - self.started)}  {status_text(job)}")
        lines = [head + (f"  {self.note}" if self.note else "")]
        if len(job.clips) > 1:
            room = max(3, self.term.height() - 3)
            clips = job.clips
            if len(clips) > room:
                # keep the clips that move in view: running first, then the next ones
                order = sorted(clips, key=lambda c: (c.status != "running",
                                                     c.status in TERMINAL, c.index))
                clips = sorted(order[:room - 1], key=lambda c: c.index)
            digits = len(str(len(job.clips) - 1))
            for c in clips:
                cp = 100 if c.status == "succeeded" else c.progress
                lines.append(f"  clip {c.index:>{digits}} {self.term.bar(cp, bar_w)} {cp:3d}%  "
                             f"{c.status}")
            hidden = len(job.clips) - len(clips)
            if hidden:
                done = sum(c.status == "succeeded" for c in job.clips)
                lines.append(f"  … {hidden} more clips ({done} of {len(job.clips)} done)")
        return lines

    def _lines(self, job: wire.JobOut) -> None:
        key = (job.status, job.paused_reason, job.queue_position, job.progress // 25)
        if key != self._said:
            self._said = key
            self.term.log(f"{job.id}: {status_text(job)} {job.progress}%")
        if len(job.clips) > 1:
            for c in job.clips:
                if self._clips_said.get(c.index, "queued") != c.status:
                    self._clips_said[c.index] = c.status
                    self.term.log(f"{job.id}: clip {c.index} {c.status}")

    async def tick(self) -> None:
        """Keeps the clock moving between events."""
        while True:
            await asyncio.sleep(0.5)
            self.render()


# ---- Ctrl-C ---------------------------------------------------------------------------------

class Interrupts:
    """Ctrl-C as something to wait for, instead of an exception that tears the loop down."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._installed = False

    def __enter__(self) -> Interrupts:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self.event.set)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    async def race(self, task: asyncio.Future[Any]) -> bool:
        """Wait for ``task`` or Ctrl-C; True when Ctrl-C came first (``task`` runs on)."""
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if task.done():
            return False
        self.event.clear()
        return True


async def ask_line(prompt: str, stream: TextIO) -> str | None:
    """A line from stdin without blocking the loop; None at end of input."""
    stream.write(prompt)
    stream.flush()
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    answer: asyncio.Future[str | None] = loop.create_future()
    buf = bytearray()

    def readable() -> None:
        chunk = os.read(fd, 1024)
        if not chunk:
            if not answer.done():
                answer.set_result(None)
            return
        buf.extend(chunk)
        if b"\n" in buf and not answer.done():
            answer.set_result(buf.split(b"\n", 1)[0].decode(errors="replace"))

    loop.add_reader(fd, readable)
    try:
        return await answer
    finally:
        loop.remove_reader(fd)


async def follow(client: AsyncClient, job: wire.JobOut, out: Output, *,
                 ask_to_cancel: bool = True) -> wire.JobOut | None:
    """Show the job's progress until it ends; None when Ctrl-C stopped the following (the
    job is then canceled if the user said so, or left running)."""
    view = JobView(out)
    view.update(job)
    if job.status in TERMINAL:
        out.term.keep()
        return job
    ticker = asyncio.ensure_future(view.tick()) if out.term.live else None
    interactive = ask_to_cancel and sys.stdin.isatty()
    task = asyncio.ensure_future(client.wait(job.id, on_update=view.update))
    try:
        with Interrupts() as interrupts:
            while await interrupts.race(task):
                if not interactive:
                    break
                view.held = True
                out.term.clear()
                asking = asyncio.ensure_future(
                    ask_line(f"cancel job {job.id}? [y/N] ", out.term.stream))
                interrupted = await interrupts.race(asking)
                reply = None if interrupted else asking.result()
                asking.cancel()
                if reply is None:
                    break
                if reply.strip().lower() in ("y", "yes"):
                    try:
                        canceled = await client.cancel_job(job.id)
                    except Conflict:
                        out.info(f"job {job.id} had already finished")
                    else:
                        out.info(f"canceled job {canceled.id}")
                        return None
                view.held = False
                view.render()
            else:
                out.term.keep()
                return task.result()
        out.info(f"job {job.id} keeps running; `veo jobs download {job.id}` fetches its "
                 "videos later")
        return None
    finally:
        for t in (task, ticker):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t


FINAL_WAIT = 900.0  # seconds a stitched video may take to build
FINAL_ABSENT = 30.0  # a succeeded job still without a final after this has none coming


async def wait_final(client: AsyncClient, job: wire.JobOut, out: Output) -> wire.JobOut:
    """After the clips: wait until the stitched video is built (or failed)."""
    timeout, absent = FINAL_WAIT, FINAL_ABSENT
    start = time.monotonic()
    view = JobView(out)
    view.note = "building the final video"
    while job.final is None or job.final.status not in TERMINAL:
        waited = time.monotonic() - start
        if waited > timeout or (job.final is None and waited > absent):
            out.info(f"job {job.id}: no final video after {int(waited)} s")
            break
        if out.term.live:
            view.update(job)
        await asyncio.sleep(1.0)
        job = await client.get_job(job.id)
    out.term.clear()
    return job


def job_error_lines(job: wire.JobOut) -> list[str]:
    lines = []
    if job.error is not None:
        lines.append(f"job {job.id} {job.status}: {job.error.message} ({job.error.code})")
    else:
        lines.append(f"job {job.id} {job.status}")
    for c in job.clips:
        if c.error is not None and (job.error is None or c.error.message != job.error.message):
            lines.append(f"  clip {c.index}: {c.error.message} ({c.error.code})")
    return lines


# ---- generate -------------------------------------------------------------------------------

async def _generate(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    images = [("first_frame", args.first_frame), ("last_frame", args.last_frame),
              *(("reference_images", p) for p in args.ref)]
    for _field, path in images:
        if path is not None and not path.is_file():
            raise UsageError(f"no such image: {path}")
    if args.variants is not None and not 1 <= args.variants <= 4:
        raise UsageError("--variants must be between 1 and 4")

    async def send(path: Path) -> str:
        up = await client.upload(path)
        out.info(f"uploaded {path} as {up.id} ({up.width}x{up.height})")
        return up.id

    ids = await asyncio.gather(*(send(p) for _f, p in images if p is not None))
    clip: dict[str, Any] = {"prompt": args.prompt}
    for (field, _p), upload_id in zip([i for i in images if i[1] is not None], ids, strict=True):
        if field == "reference_images":
            clip.setdefault(field, []).append(upload_id)
        else:
            clip[field] = upload_id
    request: dict[str, Any] = {"clips": [clip]} if len(clip) > 1 else {"prompt": args.prompt}
    options = {"model": args.model, "number_of_videos": args.variants,
               "aspect_ratio": args.aspect, "duration_seconds": args.duration,
               "resolution": args.resolution, "negative_prompt": args.negative_prompt,
               "backend": args.backend, "final": {} if args.final else None}
    request.update({k: v for k, v in options.items() if v is not None})

    job = await client.create_job(request, idempotency_key=args.idempotency_key)
    out.info(f"job {job.id}: {job.model} on the {job.backend} backend, "
             f"{len(job.clips)} clip(s) x {job.number_of_videos} variant(s)")
    done = await follow(client, job, out)
    if done is None:
        return INTERRUPTED
    if done.status != "succeeded":
        for line in job_error_lines(done):
            out.term.log(line)
        if done.status == "failed":
            out.term.log(f"retry it with `veo jobs retry {done.id}`")
        if out.json:
            out.document({"job": done, "files": []})
        return JOB_FAILED
    if args.final:
        done = await wait_final(client, done, out)
    files: list[Path] = []
    if not args.no_download:
        files = await download_job(client, done, args.out, out, final=args.final)
    if out.json:
        out.document({"job": done, "files": [str(p) for p in files]})
    else:
        for path in files:
            out.result(str(path))
    if args.final and (done.final is None or done.final.status != "succeeded"):
        out.info(f"job {done.id}: no final video"
                 + (f": {done.final.error.message}" if done.final and done.final.error else ""))
        return JOB_FAILED
    return OK


async def download_job(client: AsyncClient, job: wire.JobOut, folder: Path, out: Output, *,
                       final: bool, name: Callable[[wire.OutputOut], str] | None = None
                       ) -> list[Path]:
    count = len(job.outputs) + (1 if final and job.final and job.final.url else 0)
    if out.term.live and count:
        out.term.draw([f"{job.id}  downloading {count} file(s) to {folder}"])
    paths = await client.download_job(job, folder, final=final, name=name)
    out.term.clear()
    return paths


# ---- jobs -----------------------------------------------------------------------------------

def _local(value: Any) -> str:
    with contextlib.suppress(Exception):
        return str(value.astimezone().strftime("%Y-%m-%d %H:%M"))
    return ""


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


async def _jobs_list(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    limit = None if args.all else args.limit
    jobs = [j async for j in client.list_jobs(status=args.status, limit=limit,
                                              page_size=min(100, limit or 100))]
    if out.json:
        out.document(jobs)
        return OK
    if not jobs:
        out.info("no jobs")
        return OK
    width = shutil.get_terminal_size((100, 24)).columns
    rows = [["ID", "STATUS", "PROGRESS", "CLIPS", "OUTPUTS", "MODEL", "CREATED", "PROMPT"]]
    for j in jobs:
        rows.append([j.id, j.status, f"{j.progress}%", str(len(j.clips)), str(len(j.outputs)),
                     j.model, _local(j.created_at), j.clips[0].prompt if j.clips else ""])
    text = _table(rows)
    out.result("\n".join(line[:width - 1] if out.stdout.isatty() else line
                         for line in text.splitlines()))
    return OK


def describe(job: wire.JobOut) -> str:
    lines = [
        f"job        {job.id}",
        f"status     {status_text(job)}",
        f"progress   {100 if job.status == 'succeeded' else job.progress}%",
        f"backend    {job.backend} (asked: {job.requested_backend})",
        f"model      {job.model}, {job.resolution}, {job.aspect_ratio}, "
        f"{job.duration_seconds} s, {job.number_of_videos} variant(s)",
        f"created    {_local(job.created_at)}" + (f", finished {_local(job.finished_at)}"
                                                 if job.finished_at else ""),
        f"attempts   {job.attempts}",
    ]
    if job.error is not None:
        lines.append(f"error      {job.error.message} ({job.error.code})")
    for c in job.clips:
        lines.append(f"clip {c.index}     {c.status} {c.progress}%  {c.prompt}")
        if c.error is not None:
            lines.append(f"           error: {c.error.message} ({c.error.code})")
        for o in c.outputs:
            mark = " (selected)" if o.selected else ""
            lines.append(f"           variant {o.variant}{mark}: {o.id}  {o.size} bytes  "
                         f"{o.url}")
    if job.final is not None:
        f = job.final
        lines.append(f"final      {f.status}" + (f"  {f.size} bytes  {f.url}" if f.url else "")
                     + (f"  error: {f.error.message}" if f.error else ""))
    return "\n".join(lines)


async def _jobs_show(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    job = await client.get_job(args.job_id)
    if out.json:
        out.document(job)
    else:
        out.result(describe(job))
    return OK


async def _jobs_cancel(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    job = await client.cancel_job(args.job_id)
    if out.json:
        out.document(job)
    else:
        out.result(f"job {job.id}: {job.status}")
    return OK


async def _jobs_retry(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    job = await client.retry_job(args.job_id)
    if out.json:
        out.document(job)
    else:
        out.result(f"job {job.id}: {status_text(job)} (attempt {job.attempts + 1})")
    return OK


async def _jobs_delete(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    await client.delete_job(args.job_id)
    if out.json:
        out.document({"deleted": args.job_id})
    else:
        out.result(f"deleted job {args.job_id}")
    return OK


async def _jobs_download(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    job = await client.get_job(args.job_id)
    if job.status not in TERMINAL:
        if args.no_wait:
            return out.fail(JOB_FAILED, f"job {job.id} has not finished ({status_text(job)}, "
                            f"{job.progress}%)")
        done = await follow(client, job, out)
        if done is None:
            return INTERRUPTED
        job = done
    final = not args.no_final
    if final and job.status == "succeeded" and job.final is not None:
        job = await wait_final(client, job, out)
    files = await download_job(client, job, args.out, out, final=final)
    if out.json:
        out.document({"job": job, "files": [str(p) for p in files]})
    else:
        for path in files:
            out.result(str(path))
    if job.status != "succeeded":
        for line in job_error_lines(job):
            out.term.log(line)
        return JOB_FAILED
    return OK


_JOBS: dict[str, Callable[[AsyncClient, argparse.Namespace, Output], Awaitable[int]]] = {
    "list": _jobs_list, "show": _jobs_show, "cancel": _jobs_cancel, "retry": _jobs_retry,
    "delete": _jobs_delete, "download": _jobs_download,
}


# ---- batch ----------------------------------------------------------------------------------

JOB_FIELDS = frozenset(f.name for f in msgspec.structs.fields(wire.JobRequest)) - {"prompt"}
CLIP_FIELDS = frozenset(f.name for f in msgspec.structs.fields(wire.ClipSpec)) - {"prompt"}
IMAGE_FIELDS = frozenset({"first_frame", "last_frame", "reference_images"}) & CLIP_FIELDS
TEMPLATED = frozenset({"prompt", "negative_prompt"}) | IMAGE_FIELDS
UPLOAD_ID = re.compile(r"^upl_[A-Za-z0-9_-]+$")
_PLACEHOLDER_ID = "upl_" + "0" * 24  # stands in for an image not uploaded yet while checking
STATE_FILE = ".veo-batch.json"
RESULT_COLUMNS = ("row", "job_id", "status", "files", "error")


class RowError(Exception):
    """A row that cannot become a job; the batch goes on with the others."""


@dataclasses.dataclass
class Row:
    number: int  # 1-based, counting data rows (not the CSV header)
    values: dict[str, Any]


def read_rows(path: Path) -> list[Row]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    suffix = path.suffix.lower()
    jsonl = suffix in (".jsonl", ".ndjson") or (suffix != ".csv" and suffix != ".tsv"
                                                and text.lstrip().startswith("{"))
    rows: list[Row] = []
    if jsonl:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
            if not isinstance(value, dict):
                raise UsageError(f"{path}:{lineno}: each line must be a JSON object")
            rows.append(Row(len(rows) + 1, value))
    else:
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
        if not reader.fieldnames:
            raise UsageError(f"{path}: empty file")
        for values in reader:
            if not any((v or "").strip() for v in values.values() if isinstance(v, str)):
                continue
            clean = {str(k).strip(): v for k, v in values.items() if k is not None}
            rows.append(Row(len(rows) + 1, clean))
    if not rows:
        raise UsageError(f"{path}: no rows")
    return rows


def parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"--set {item!r}: use FIELD=VALUE")
        out[name.strip()] = value
    return out


def _fill(template: str, values: Mapping[str, Any], field: str) -> str:
    try:
        return string.Formatter().vformat(template, (), dict(values))
    except KeyError as exc:
        raise RowError(f"{field}: {{{exc.args[0]}}} is not a column of this row") from None
    except (ValueError, IndexError) as exc:
        raise RowError(f"{field}: bad placeholder ({exc}); write {{{{ and }}}} for braces"
                       ) from None


def _cell(value: Any) -> Any:
    """A CSV cell holding JSON (an object, a list) becomes that value."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


def _images(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [p.strip() for p in str(value).split(";") if p.strip()]


@dataclasses.dataclass
class Prepared:
    row: Row
    request: dict[str, Any]  # images still as paths or upload ids
    images: dict[str, Path]  # image path -> resolved file, for those to upload
    key: str


def _validation_message(exc: msgspec.ValidationError) -> str:
    msg = str(exc)
    m = re.search(r" - at `\$\.(.+)`$", msg)
    return f"{m.group(1)}: {msg[:m.start()]}" if m else msg


def prepare(row: Row, defaults: Mapping[str, str], source: Path) -> Prepared:
    values = {**defaults, **{k: v for k, v in row.values.items()
                             if v is not None and not (isinstance(v, str) and not v.strip())}}
    if "prompt" not in values and "clips" not in values:
        raise RowError("no prompt")
    clip: dict[str, Any] = {}
    request: dict[str, Any] = {}
    for name, raw in values.items():
        value = _fill(raw, values, name) if name in TEMPLATED and isinstance(raw, str) else raw
        if name == "prompt":
            clip["prompt"] = str(value)
        elif name in IMAGE_FIELDS:
            imgs = _images(_cell(value))
            clip[name] = imgs if name == "reference_images" else imgs[0] if imgs else None
        elif name in CLIP_FIELDS:
            clip[name] = value
        elif name in JOB_FIELDS:
            request[name] = _cell(value)
        # any other column only feeds placeholders
    if "clips" in request and clip:
        raise RowError("give either a prompt (with frames) or clips, not both")
    if clip:
        if "prompt" not in clip:
            raise RowError("no prompt")
        if len(clip) == 1:
            request["prompt"] = clip["prompt"]
        else:
            request["clips"] = [clip]

    images: dict[str, Path] = {}
    for c in request.get("clips") or []:
        if not isinstance(c, dict):
            continue
        for name in IMAGE_FIELDS:
            refs = c.get(name)
            for ref in refs if isinstance(refs, list) else [refs] if refs else []:
                if UPLOAD_ID.match(ref):
                    continue
                path = (source.parent / ref).resolve()
                if not path.is_file():
                    raise RowError(f"{name}: no such image: {ref}")
                images[ref] = path
    try:
        checked = msgspec.convert(_with_ids(request, {r: _PLACEHOLDER_ID for r in images}),
                                  wire.JobRequest, strict=False)
    except msgspec.ValidationError as exc:
        raise RowError(_validation_message(exc)) from None
    # what defines the row: the file, its place and what it asks for, images by content, so
    # a rerun finds its earlier job and an edited row makes a new one
    ident = {"file": str(source.resolve()), "row": row.number,
             "request": msgspec.to_builtins(checked),
             "images": {r: file_sha256(p) for r, p in sorted(images.items())}}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    return Prepared(row, request, images, f"veo-batch-{digest[:40]}")


def _with_ids(request: dict[str, Any], ids: Mapping[str, str]) -> dict[str, Any]:
    if not request.get("clips"):
        return request
    clips = []
    for c in request["clips"]:
        if isinstance(c, dict):
            c = dict(c)
            for name in IMAGE_FIELDS:
                v = c.get(name)
                if isinstance(v, list):
                    c[name] = [ids.get(x, x) for x in v]
                elif isinstance(v, str):
                    c[name] = ids.get(v, v)
        clips.append(c)
    return {**request, "clips": clips}


def _safe_name(text: str) -> str:
    cleaned = re.sub(r"[^\w.\-]+", "_", text, flags=re.UNICODE).strip("._")
    return cleaned[:120] or "row"


def output_names(job: wire.JobOut, base: str) -> Callable[[wire.OutputOut], str]:
    """``{base}.mp4`` for a one-video job, ``{base}-v{n}`` for variants of one clip,
    ``{base}-c{clip}-v{n}`` otherwise."""
    def name(o: wire.OutputOut) -> str:
        if len(job.clips) == 1 and job.number_of_videos == 1:
            return f"{base}.mp4"
        if len(job.clips) == 1:
            return f"{base}-v{o.variant}.mp4"
        return f"{base}-c{o.clip}-v{o.variant}.mp4"
    return name


@dataclasses.dataclass
class Result:
    row: int
    job_id: str = ""
    status: str = "pending"
    files: list[str] = dataclasses.field(default_factory=list)
    error: str = ""
    progress: int = 0


class BatchState:
    """What earlier runs did (upload ids by image checksum, job ids by row), kept next to the
    outputs and replaced atomically, so a run killed at any point resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"version": 1, "uploads": {}, "rows": {}}
        self._lock = asyncio.Lock()
        if path.is_file():
            with contextlib.suppress(ValueError, OSError):
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict) and loaded.get("version") == 1:
                    self.data = loaded

    def row(self, number: int) -> dict[str, Any]:
        rows: dict[str, dict[str, Any]] = self.data["rows"]
        return rows.setdefault(str(number), {})

    @property
    def uploads(self) -> dict[str, str]:
        uploads: dict[str, str] = self.data["uploads"]
        return uploads

    async def save(self) -> None:
        async with self._lock:
            text = json.dumps(self.data, indent=1, sort_keys=True)
            await asyncio.to_thread(_atomic_write, self.path, text)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def results_csv(results: Iterable[Result]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for r in sorted(results, key=lambda r: r.row):
        writer.writerow([r.row, r.job_id, r.status, ";".join(r.files), r.error])
    return buf.getvalue()


class BatchView:
    def __init__(self, out: Output, results: dict[int, Result]) -> None:
        self.out = out
        self.results = results
        self.started = time.monotonic()

    def line(self) -> str:
        rs = list(self.results.values())
        counts: dict[str, int] = {}
        for r in rs:
            counts[r.status] = counts.get(r.status, 0) + 1
        finished = sum(counts.get(s, 0) for s in ("succeeded", "failed", "canceled", "invalid",
                                                   "error"))
        pct = sum(100 if r.status in TERMINAL or r.status in ("invalid", "error") else r.progress
                  for r in rs) // max(1, len(rs))
        bar_w = max(10, min(30, self.out.term.width() - 70))
        parts = [f"{counts[s]} {s}" for s in ("downloading", "running", "queued", "paused",
                                              "pending", "failed", "canceled", "invalid",
                                              "error") if counts.get(s)]
        return (f"batch {finished}/{len(rs)} done  {self.out.term.bar(pct, bar_w)} {pct:3d}%  "
                f"{_elapsed(time.monotonic() - self.started)}  " + " · ".join(parts))

    def render(self) -> None:
        self.out.term.draw([self.line()])

    def log(self, text: str) -> None:
        if self.out.term.live or not self.out.json:
            self.out.term.log(text)
        self.render()

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.render()


async def _batch(client: AsyncClient, args: argparse.Namespace, out: Output) -> int:
    source: Path = args.file
    rows = read_rows(source)
    defaults = parse_sets(args.set)
    for name in defaults:
        if name not in JOB_FIELDS and name not in CLIP_FIELDS:
            raise UsageError(f"--set {name}: not a job field "
                             f"({', '.join(sorted(JOB_FIELDS | CLIP_FIELDS))})")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    folder: Path = args.out or Path(f"{source.stem}-videos")
    results_path: Path = args.results or folder / "results.csv"
    state = BatchState(folder / STATE_FILE)
    results = {r.number: Result(r.number) for r in rows}
    view = BatchView(out, results)
    digits = max(3, len(str(len(rows))))
    names: dict[int, str] = {}
    for row in rows:
        base = f"row{row.number:0{digits}d}"
        if args.name:
            try:
                base = _safe_name(string.Formatter().vformat(args.name, (), row.values))
            except (KeyError, ValueError, IndexError) as exc:
                raise UsageError(f"--name {args.name!r}: row {row.number}: {exc!r}") from None
        names[row.number] = base
    seen: dict[str, int] = {}
    for number, base in names.items():
        if base in seen:  # two rows would write the same files
            names[number] = f"{base}-row{number}"
        seen[base] = number

    gate = asyncio.Semaphore(args.concurrency)
    active = 0
    saving = asyncio.Lock()

    async def write_results() -> None:
        async with saving:
            await asyncio.to_thread(_atomic_write, results_path, results_csv(results.values()))

    async def upload_images(prepared: Prepared) -> dict[str, str]:
        ids = {}
        for ref, path in prepared.images.items():
            sha = await asyncio.to_thread(file_sha256, path)
            if sha not in state.uploads:
                up = await client.upload(path)
                state.uploads[sha] = up.id
                await state.save()
            ids[ref] = state.uploads[sha]
        return ids

    async def submit(prepared: Prepared, saved: dict[str, Any]) -> wire.JobOut:
        if saved.get("key") == prepared.key and saved.get("job_id"):
            with contextlib.suppress(NotFound):
                job = await client.get_job(saved["job_id"])
                return job
        for tries in range(2):
            ids = await upload_images(prepared)
            body = msgspec.convert(_with_ids(prepared.request, ids), wire.JobRequest,
                                   strict=False)
            try:
                job = await client.create_job(body, idempotency_key=prepared.key)
            except ApiError as exc:
                stale = (exc.status == 422 and exc.field is not None and tries == 0
                         and any(exc.field.endswith(f) or f"{f}[" in exc.field
                                 for f in IMAGE_FIELDS))
                if not stale:
                    raise
                # an upload the service no longer has: send the images again
                for path in prepared.images.values():
                    state.uploads.pop(await asyncio.to_thread(file_sha256, path), None)
                continue
            saved.update(key=prepared.key, job_id=job.id)
            await state.save()
            return job
        raise AssertionError("unreachable")

    async def process(row: Row) -> None:
        nonlocal active
        result = results[row.number]
        saved = state.row(row.number)
        try:
            prepared = await asyncio.to_thread(prepare, row, defaults, source)
            async with gate:
                job = await submit(prepared, saved)
            result.job_id = job.id
            if args.retry_failed and job.status in ("failed", "canceled"):
                job = await client.retry_job(job.id)
                view.log(f"row {row.number}: retrying job {job.id}")
            result.status, result.progress = job.status, job.progress
            view.render()
            if args.no_wait:
                return
            active += 1
            try:
                while job.status not in TERMINAL:
                    # many rows: check each less often, so the service sees a steady rate
                    await asyncio.sleep(max(args.poll, active / 20))
                    job = await client.get_job(job.id)
                    result.status, result.progress = job.status, job.progress
            finally:
                active -= 1
            if job.status == "succeeded":
                result.status = "downloading"
                async with gate:
                    paths = await client.download_job(
                        job, folder, final=job.final is not None,
                        name=output_names(job, names[row.number]))
                result.files = [str(p) for p in paths]
                result.status = "succeeded"
                view.log(f"row {row.number}: succeeded -> {', '.join(result.files)}")
            else:
                result.status = job.status
                result.error = (f"{job.error.code}: {job.error.message}" if job.error
                                else job.status)
                view.log(f"row {row.number}: {job.status}: {result.error}")
        except RowError as exc:
            result.status, result.error = "invalid", str(exc)
            view.log(f"row {row.number}: invalid: {exc}")
        except ApiError as exc:
            if exc.status in (401, 403) or exc.status >= 500:
                raise
            result.status = "invalid" if exc.status in (400, 404, 409, 413, 422) else "error"
            result.error = f"{exc.code}: {exc.message}"
            view.log(f"row {row.number}: {result.status}: {result.error}")
        except DownloadError as exc:
            result.status, result.error = "error", str(exc)
            view.log(f"row {row.number}: error: {exc}")
        finally:
            saved.update(status=result.status, files=result.files, error=result.error)
            await state.save()
            await write_results()

    view.render()
    ticker = asyncio.ensure_future(view.tick()) if out.term.live else None
    everything = asyncio.ensure_future(_gather_all(process(r) for r in rows))
    try:
        with Interrupts() as interrupts:
            if await interrupts.race(everything):
                everything.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await everything
                await write_results()
                out.term.clear()
                out.info("interrupted: rerun the same command to pick up where this stopped "
                         "(submitted jobs keep running)")
                return INTERRUPTED
            everything.result()
    finally:
        if ticker is not None:
            ticker.cancel()
        view.render()
        out.term.keep()
    await write_results()
    ok = all(r.status == "succeeded" or (args.no_wait and r.status not in ("invalid", "error"))
             for r in results.values())
    summary = _summary(results.values())
    if out.json:
        out.document({"results": [dataclasses.asdict(r) for r in sorted(
            results.values(), key=lambda r: r.row)], "results_csv": str(results_path)})
    else:
        out.result(f"{summary}; results in {results_path}")
    return OK if ok else JOB_FAILED


async def _gather_all(coros: Iterable[Awaitable[None]]) -> None:
    """Run every row; the first error that must stop the batch (auth, an unreachable
    service) cancels the rest and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                group.create_task(_as_coroutine(coro))
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None


async def _as_coroutine(aw: Awaitable[None]) -> None:
    await aw


def _summary(results: Iterable[Result]) -> str:
    counts: dict[str, int] = {}
    rs = list(results)
    for r in rs:
        counts[r.status] = counts.get(r.status, 0) + 1
    return f"{len(rs)} rows: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))

