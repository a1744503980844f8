"""The arq ``ctx`` of the worker, typed, and the per-clip handle a backend works through."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Protocol, TypedDict

from veo import jobs, keys, lifecycle
from veo.db import Row
from veo.services import Services


class Backend(Protocol):
    """A way of making clips. The runner claims, beats, finishes; the backend only generates."""

    name: str
    clip_concurrency: int  # clips of one job generated at once

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Held for the whole job: bounds how many jobs of this backend run at once."""
        ...

    async def blocked(self, job: Row) -> str | None:
        """A pause reason if this job must not start now (e.g. Flow waits for a login)."""
        ...

    async def run_clip(self, run: ClipRun) -> None: ...


class Ctx(TypedDict, total=False):
    services: Services
    backends: dict[str, Backend]
    worker_id: str
    tasks: set[asyncio.Task[Any]]
    closers: list[Any]


@dataclasses.dataclass
class ClipRun:
    """One clip of one claimed run of a job, with what a backend may do to it."""

    svc: Services
    job: Row
    clip: Row
    clips_total: int
    progress_of: dict[int, int]

    @property
    def job_id(self) -> str:
        job_id: str = self.job["id"]
        return job_id

    @property
    def index(self) -> int:
        idx: int = self.clip["idx"]
        return idx

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.job["params"]
        return params

    async def progress(self, pct: int) -> None:
        pct = max(0, min(99, pct))
        if self.progress_of.get(self.index) == pct:
            return
        self.progress_of[self.index] = pct
        await self.svc.db.set_clip_progress(self.job_id, self.index, pct)
        overall = jobs.overall_progress(
            [self.progress_of.get(i, 0) for i in range(self.clips_total)])
        if await self.svc.db.set_progress(self.job_id, self.job["run_seq"], overall):
            await lifecycle.publish(self.svc, self.job_id, "running", overall)

    async def store_output(self, variant: int, chunks: AsyncIterator[bytes]) -> Row:
        """Stream one video to its deterministic key; a rerun overwrites, never duplicates."""
        key = keys.output(self.job_id, self.index, variant)
        info = await self.svc.storage.put_stream(key, chunks, "video/mp4")
        assert info.sha256 is not None
        return await self.svc.db.upsert_output(self.job_id, self.index, variant, key, info.size,
                                               info.sha256)

    async def existing_outputs(self) -> set[int]:
        _, outputs = await self.svc.db.clips_and_outputs([self.job_id])
        return {o["variant"] for o in outputs if o["clip"] == self.index}

    async def frame(self, upload_id: str | None) -> tuple[bytes, str] | None:
        if not upload_id:
            return None
        rows = await self.svc.db.uploads_by_ids([upload_id], self.job["user_id"])
        row = rows[upload_id]
        return await self.svc.storage.get_bytes(row["object_key"]), row["content_type"]
