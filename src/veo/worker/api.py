"""The ``api`` backend: Google's video models through the Gemini API with the owner's keys and
the operator pool. Today that is Gemini Omni through the Interactions API.

For each clip it makes ``ceil(number_of_videos / samples_per_request)`` requests (Omni makes one
video per request). Each interaction id is written to PostgreSQL with the key that created it
before it is polled, so a rerun resumes it with that key (interactions are per Google project)
instead of paying for a second generation. Variants are numbered in request order.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from veo import logs
from veo.catalog import Catalog
from veo.config import Settings
from veo.errors import GenerationFailed, KeyProblem, ModelRetired
from veo.gemini import Blob, Gemini, Video, outcome
from veo.keypool import KeyPool, Lease
from veo.records import Generation, Job
from veo.worker.context import ClipRun, Frame

log = logs.get_logger("veo.worker.api")

EXPECTED_SECONDS = 60.0  # typical generation time, only to shape the progress curve
FIRST_POLL = 1.0  # seconds before the first poll; grows by POLL_GROWTH up to poll_seconds
POLL_GROWTH = 1.5
POLL_BUSY_WAIT = 2.0  # seconds to wait when a poll itself is rate limited (it costs no quota)
# Google keeps a stored interaction about two days; an extension refers to it by id only well
# inside that, else the earlier video is sent as input
EXTEND_BY_ID_WITHIN = timedelta(hours=40)


class _Spent(Exception):
    """The interaction itself ended without a usable video (``failure`` says how), as opposed
    to a poll that could not reach Google, after which the generation may still be fine."""

    def __init__(self, failure: GenerationFailed) -> None:
        super().__init__(failure.message)
        self.failure = failure


class Inputs:
    """What every request of a clip sends."""

    def __init__(self, first: Blob | None, last: Blob | None, refs: list[Blob],
                 video: Blob | None, previous: Generation | None) -> None:
        self.first, self.last, self.refs, self.video, self.previous = (first, last, refs, video,
                                                                        previous)


class ApiBackend:
    name = "api"
    clip_concurrency = 4  # clips of one job in flight at once; each is a remote generation

    def __init__(self, pool: KeyPool, gemini: Gemini, settings: Settings,
                 catalog: Catalog) -> None:
        self.pool = pool
        self.gemini = gemini
        self.settings = settings
        self.catalog = catalog

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def blocked(self, job: Job) -> str | None:
        return None

    async def run_clip(self, run: ClipRun) -> None:
        model = self.catalog.get(run.job.model)
        if model is None or model.protocol != "interactions":
            raise GenerationFailed(f"the api backend cannot run {run.job.model}",
                                   code="model_unsupported")
        if model.retired(datetime.now(UTC).date()):
            self._retired(run, model.id, model.replacement)
        wanted = run.params.number_of_videos
        per = max(1, model.samples_per_request)
        counts = [min(per, wanted - i * per) for i in range(math.ceil(wanted / per))]
        stored = await run.existing_outputs()
        saved = await run.generations()
        inputs = await self._inputs(run)
        first_variant = 0
        for request, count in enumerate(counts):
            variants = range(first_variant, first_variant + count)
            first_variant += count
            if all(v in stored for v in variants):
                continue
            share = (100 * request / len(counts), 100 / len(counts))
            videos, lease = await self._generate(run, request, saved.get(request), inputs,
                                                 share)
            try:
                for offset, video in enumerate(videos[:count]):
                    await run.store_output(variants[offset],
                                           self.gemini.download(lease.secret, video))
            except GenerationFailed as exc:
                if exc.code == "bad_video":
                    # the same download would be just as unusable: make a new one next run
                    await run.forget_generation(request)
                raise
            await run.progress(int(100 * first_variant / wanted))

    def _retired(self, run: ClipRun, model: str, replacement: str | None) -> NoReturn:
        log.warning("model.retired", model=model, replacement=replacement, **run.fields)
        hint = f"; use {replacement}" if replacement else ""
        raise ModelRetired(f"{model} is no longer available{hint}", model=model,
                           replacement=replacement)

    async def _inputs(self, run: ClipRun) -> Inputs:
        def blob(frame: Frame | None) -> Blob | None:
            return None if frame is None else Blob(frame.data, frame.content_type)

        first, last = blob(await run.first_frame()), blob(await run.last_frame())
        refs = [Blob(f.data, f.content_type) for f in await run.references()]
        video, previous = None, None
        source = await run.extend_source()
        if source is not None:
            gens = {g.request: g for g in await run.db.generations_of_clip(source.job_id,
                                                                           source.clip)}
            gen = gens.get(source.variant)
            fresh = gen is not None and datetime.now(UTC) - gen.created_at < EXTEND_BY_ID_WITHIN
            if fresh:
                previous = gen
            else:
                video = Blob(await run.storage.get_bytes(source.object_key), "video/mp4")
        return Inputs(first, last, refs, video, previous)

    async def _create(self, run: ClipRun, lease: Lease, inputs: Inputs,
                      previous_id: str | None) -> str:
        p = run.params
        return await self.gemini.create(
            lease.secret, model=run.job.model, prompt=run.clip.prompt, first_frame=inputs.first,
            last_frame=inputs.last, references=inputs.refs,
            video=inputs.video if previous_id is None else None,
            previous_interaction_id=previous_id, aspect_ratio=p.aspect_ratio,
            resolution=p.resolution, duration_seconds=p.duration_seconds, delivery="uri")

    async def _acquire(self, run: ClipRun, inputs: Inputs, tried: set[str],
                       ) -> tuple[Lease, str | None]:
        """A key for a new generation. An extension by interaction id must be created in the
        project that holds the earlier interaction, so it prefers that key; if that key cannot
        be had, the earlier video is sent as input instead."""
        prev = inputs.previous
        if prev is not None and prev.key_id not in tried:
            lease = await self.pool.lease_of(prev.key_id)
            if lease is not None:
                return lease, prev.handle
        if prev is not None and inputs.video is None:
            source = await run.extend_source()
            assert source is not None
            inputs.video = Blob(await run.storage.get_bytes(source.object_key), "video/mp4")
        return await self.pool.acquire(run.job.user_id, frozenset(tried),
                                       waiting=run.started), None

    async def _generate(self, run: ClipRun, request: int, saved: Generation | None,
                        inputs: Inputs, share: tuple[float, float],
                        ) -> tuple[tuple[Video, ...], Lease]:
        handle, lease = None, None
        if saved is not None:
            lease = await self.pool.lease_of(saved.key_id)
            if lease is None:
                # the key that created it is gone: nobody else may poll it, so start afresh
                await run.forget_generation(request)
            else:
                handle = saved.handle
        tried: set[str] = set()
        while True:
            if handle is None or lease is None:
                lease, previous_id = await self._acquire(run, inputs, tried)
                sent = time.monotonic()
                try:
                    handle = await self._create(run, lease, inputs, previous_id)
                except KeyProblem as exc:
                    tried.add(lease.key_id)
                    await self._blame(lease, exc, run)
                    handle = None
                    continue
                except ModelRetired as exc:
                    await self.pool.unused(lease)
                    self._retired(run, run.job.model, exc.replacement)
                    raise
                await self.pool.spent(lease, sent, time.monotonic())
                await run.save_generation(request, handle, lease.key_id, 1)
                log.info("api.submitted", interaction=handle, key_id=lease.key_id, **run.fields)
            run.started()
            try:
                videos = await self._wait(run, lease, handle, share)
            except KeyProblem as exc:
                if not exc.invalid:
                    await asyncio.sleep(POLL_BUSY_WAIT)
                    continue
                # the creating key died mid-generation: what it made is out of reach
                await self._blame(lease, exc, run)
                await run.forget_generation(request)
                tried.add(lease.key_id)
                handle = None
                continue
            except _Spent as spent:
                failure = spent.failure
                if failure.retryable or failure.code == "output_unavailable":
                    # spent: the next run must submit afresh, never poll this one again
                    await run.forget_generation(request)
                raise failure from None
            # a poll that failed to reach Google (GenerationFailed from the call itself, e.g.
            # a network error or a 5xx) propagates as it is and keeps the generation: the next
            # run resumes polling it instead of paying for it again
            await self.pool.ok(lease)
            return videos, lease

    async def _blame(self, lease: Lease, exc: KeyProblem, run: ClipRun) -> None:
        if exc.invalid:
            await self.pool.invalid(lease, exc.message, **run.fields)
        else:
            await self.pool.refused(lease, exc.message, exc.retry_after, **run.fields)

    async def _wait(self, run: ClipRun, lease: Lease, handle: str,
                    share: tuple[float, float]) -> tuple[Video, ...]:
        """Poll until the interaction ends; this request's part of the clip's progress is
        ``share`` (start, span) and follows a curve shaped by the typical generation time."""
        started = time.monotonic()
        delay = min(FIRST_POLL, self.settings.poll_seconds)
        while True:
            result = outcome(await self.gemini.get(lease.secret, handle))
            if isinstance(result, GenerationFailed):
                raise _Spent(result)
            if result is not None:
                return result
            elapsed = time.monotonic() - started
            start, span = share
            await run.progress(int(start + span * 0.9 * (1 - math.exp(-elapsed /
                                                                     EXPECTED_SECONDS))))
            await asyncio.sleep(delay)
            delay = min(delay * POLL_GROWTH, self.settings.poll_seconds)
