"""What a backend works through: the typed arq ``ctx``, the ``Backend`` protocol, and
``ClipRun``, the handle on one clip of one claimed run.

Every write a backend makes goes through ``ClipRun`` and is fenced by the run's number: progress
and generations by a guarded update, objects by staging them under ``staging/{job}/{run}/`` and
moving them to their final key while holding the job's row lock. A run that lost its job (a
cancel, a re-queue after its worker went silent) writes nothing: ``RunLost`` is raised instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypedDict

import msgspec
from redis.asyncio import Redis

from veo import events, jobs, logs, media, metrics, names
from veo.db import Db, RunLost
from veo.errors import GenerationFailed
from veo.records import Clip, Generation, Job, Output, Params
from veo.services import Services
from veo.storage import Storage

log = logs.get_logger("veo.worker")


class Backend(Protocol):
    """A way of making clips. The runner claims, beats, finishes; the backend only generates."""

    name: str
    clip_concurrency: int  # clips of one job generated at once

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Held for the whole job: bounds how many jobs of this backend run at once."""
        ...

    async def blocked(self, job: Job) -> str | None:
        """A pause reason if this job must not start now (e.g. Flow waits for a login)."""
        ...

    async def run_clip(self, run: ClipRun) -> None: ...


class Ctx(TypedDict, total=False):
    services: Services
    backends: dict[str, Backend]
    worker_id: str
    tasks: set[Any]
    closers: list[Callable[[], Awaitable[None]]]
    starting: asyncio.Semaphore  # see runner.STARTING_AT_ONCE
    job_id: str  # set by arq: the arq id of the run being executed
    job_try: int


class Frame(msgspec.Struct, frozen=True):
    data: bytes
    content_type: str


class Staged(msgspec.Struct, frozen=True):
    variant: int
    key: str
    poster_key: str
    size: int
    sha256: str
    duration: float | None


@dataclasses.dataclass
class ClipRun:
    """One clip of one claimed run of a job, with what a backend may read and write."""

    db: Db
    storage: Storage
    redis: Redis
    job: Job
    clip: Clip
    clips_total: int
    progress_of: dict[int, int]
    chained_frame: Frame | None = None  # continuity: the previous clip's last frame
    staged: list[Staged] = dataclasses.field(default_factory=list)
    # the backend calls it when the run is about to wait on something remote (a key, a
    # generation, a browser): the next picked-up run may start (see ``runner.Admission``)
    started: Callable[[], None] = lambda: None

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def index(self) -> int:
        return self.clip.idx

    @property
    def params(self) -> Params:
        return self.job.params

    @property
    def fields(self) -> dict[str, Any]:
        """Log fields naming this clip."""
        out: dict[str, Any] = {"job_id": self.job.id, "clip": self.clip.idx,
                               "backend": self.job.backend}
        if self.job.backend == "flow":
            out["account"] = self.job.account
        return out

    # ---- inputs
    async def _upload(self, upload_id: str) -> Frame:
        rows = await self.db.uploads_by_ids([upload_id], self.job.user_id)
        row = rows.get(upload_id)
        if row is None:
            raise GenerationFailed(f"the upload {upload_id} is gone", code="input_missing")
        return Frame(await self.storage.get_bytes(row.object_key), row.content_type)

    async def first_frame(self) -> Frame | None:
        if self.chained_frame is not None:
            return self.chained_frame
        return await self._upload(self.clip.first_frame) if self.clip.first_frame else None

    async def last_frame(self) -> Frame | None:
        return await self._upload(self.clip.last_frame) if self.clip.last_frame else None

    async def references(self) -> list[Frame]:
        return [await self._upload(u) for u in self.clip.reference_images]

    async def extend_source(self) -> Output | None:
        """The earlier output this clip continues, if it extends one."""
        if not self.clip.extend_from:
            return None
        out = await self.db.output_of_user(self.clip.extend_from, self.job.user_id)
        if out is None:
            raise GenerationFailed(f"the output {self.clip.extend_from} to extend is gone",
                                   code="input_missing")
        return out

    # ---- remote generations
    async def generations(self) -> dict[int, Generation]:
        """Generations this clip already paid for, by request number."""
        return {g.request: g for g in await self.db.generations_of_clip(self.job.id,
                                                                        self.clip.idx)}

    async def save_generation(self, request: int, handle: str, key_id: str | None,
                              samples: int) -> None:
        """Record a generation the moment it exists, before it is polled."""
        if not await self.db.save_generation(self.job.id, self.job.run_seq, self.clip.idx,
                                             request, handle, key_id, samples):
            raise RunLost(self.job.id)

    async def forget_generation(self, request: int) -> None:
        """A failed or spent generation: the next run submits afresh instead of polling it."""
        await self.db.forget_generation(self.job.id, self.job.run_seq, self.clip.idx, request)

    # ---- outputs
    async def existing_outputs(self) -> set[int]:
        """Variants already stored by an earlier run (a redo replaces them all, so none)."""
        if self.clip.redo:
            return set()
        outs = await self.db.outputs_of_job(self.job.id)
        return {o.variant for o in outs if o.clip == self.clip.idx}

    async def store_output(self, variant: int, chunks: AsyncIterator[bytes], *,
                           poster: bytes | None = None) -> Staged:
        """Stream one video into storage, with its poster and duration. It reaches its final
        key at once, or, for a clip being redone, once every new variant exists."""
        stem = f"{self.clip.idx}-{variant}"
        key = names.staged(self.job.id, self.job.run_seq, f"{stem}.mp4")
        info = await self.storage.put_stream(key, chunks, "video/mp4")
        assert info.sha256 is not None
        source = await self.storage.source(key)
        try:
            probe = await media.probe(source)
        except media.MediaError as exc:
            await self.storage.delete(key)
            raise GenerationFailed(f"the video of variant {variant} is unusable: {exc.message}",
                                   code="bad_video", retryable=True) from exc
        if poster is None:
            poster = await media.poster(source, probed=probe)
        poster_key = names.staged(self.job.id, self.job.run_seq, f"{stem}.jpg")
        await self.storage.put_bytes(poster_key, poster, "image/jpeg")
        staged = Staged(variant=variant, key=key, poster_key=poster_key, size=info.size,
                        sha256=info.sha256, duration=probe.duration)
        if self.clip.redo:
            self.staged.append(staged)
        else:
            await self.promote([staged])
        return staged

    async def promote(self, staged: list[Staged], *, replace_all: bool = False) -> list[Output]:
        """Move staged objects to their final keys and record them, under the run's lock."""
        try:
            async with self.db.fenced(self.job.id, self.job.run_seq) as fence:
                out = []
                for s in staged:
                    key = names.output(self.job.id, self.clip.idx, s.variant)
                    poster_key = names.poster(self.job.id, self.clip.idx, s.variant)
                    await self.storage.move(s.key, key)
                    await self.storage.move(s.poster_key, poster_key)
                    out.append(await fence.upsert_output(
                        self.job.id, self.clip.idx, s.variant, key, s.size, s.sha256,
                        poster_key=poster_key, duration_seconds=s.duration))
                if replace_all:
                    for gone in await fence.drop_outputs_from(self.job.id, self.clip.idx,
                                                              len(staged)):
                        await self.storage.delete(gone.object_key)
                        if gone.poster_key:
                            await self.storage.delete(gone.poster_key)
                return out
        except RunLost:
            for s in staged:
                await self.storage.delete(s.key)
                await self.storage.delete(s.poster_key)
            raise

    async def finish_redo(self) -> None:
        """A redone clip's new variants replace the old ones, all at once."""
        if self.clip.redo and self.staged:
            await self.promote(sorted(self.staged, key=lambda s: s.variant), replace_all=True)

    async def progress(self, pct: int) -> None:
        pct = max(0, min(99, pct))
        if self.progress_of.get(self.index) == pct:
            return
        self.progress_of[self.index] = pct
        await self.db.set_clip_progress(self.job.id, self.job.run_seq, self.index, pct)
        overall = jobs.overall_progress(
            [self.progress_of.get(i, 0) for i in range(self.clips_total)])
        if await self.db.set_progress(self.job.id, self.job.run_seq, overall):
            await events.publish(self.redis, self.job.id, "running", overall)


def count_clip(backend: str, status: str) -> None:
    metrics.CLIPS.labels(backend, status).inc()
