"""The ``api`` backend: Veo through the Gemini API with the owner's keys and the operator pool.

For each clip it makes ``ceil(number_of_videos / samples_per_request)`` requests. Each
operation name is written to PostgreSQL before it is polled, so a rerun resumes it and never
pays for a second generation. Variants are numbered in request order, then sample order.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from google.genai import types

from veo import logs
from veo.catalog import MODELS
from veo.errors import GenerationFailed, KeyProblem
from veo.gemini import Gemini
from veo.keypool import KeyPool, Lease
from veo.worker.context import ClipRun

log = logs.get_logger("veo.worker.api")

EXPECTED_SECONDS = 60.0  # typical Veo latency (research §5), only to shape the progress curve
FIRST_POLL = 1.0  # seconds before the first poll; grows by POLL_GROWTH up to poll_seconds
POLL_GROWTH = 1.5
# google.rpc codes that are worth another try: CANCELLED, UNKNOWN, DEADLINE_EXCEEDED,
# RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE
RETRYABLE_RPC = {1, 2, 4, 8, 10, 13, 14}


class ApiBackend:
    name = "api"
    clip_concurrency = 4  # clips of one job in flight at once; each is a remote operation

    def __init__(self, pool: KeyPool, gemini: Gemini, poll_seconds: float) -> None:
        self.pool = pool
        self.gemini = gemini
        self.poll_seconds = poll_seconds

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def blocked(self, job: dict[str, Any]) -> str | None:
        return None

    async def run_clip(self, run: ClipRun) -> None:
        model = MODELS[run.job["model"]]
        wanted = int(run.params.get("number_of_videos", 1))
        per = model.samples_per_request
        counts = [min(per, wanted - i * per) for i in range(math.ceil(wanted / per))]
        stored = await run.existing_outputs()
        saved = {op["request"]: op for op in await run.svc.db.operations_of_clip(
            run.job_id, run.index)}
        source, config_kw = await self._request(run)
        first_variant = 0
        for request, count in enumerate(counts):
            variants = range(first_variant, first_variant + count)
            first_variant += count
            if all(v in stored for v in variants):
                continue
            videos, lease = await self._generate(run, request, count, saved.get(request),
                                                 source, config_kw)
            for offset, video in enumerate(videos[:count]):
                await run.store_output(variants[offset], self._download(lease, video))
            await run.progress(int(100 * first_variant / wanted))

    async def _request(self, run: ClipRun) -> tuple[types.GenerateVideosSource, dict[str, Any]]:
        model = MODELS[run.job["model"]]
        p = run.params
        first = await run.frame(run.clip["first_frame"])
        last = await run.frame(run.clip["last_frame"])
        source = types.GenerateVideosSource(
            prompt=run.clip["prompt"],
            image=types.Image(image_bytes=first[0], mime_type=first[1]) if first else None)
        kw: dict[str, Any] = {"duration_seconds": p.get("duration_seconds"),
                              "aspect_ratio": p.get("aspect_ratio")}
        if model.send_resolution:
            kw["resolution"] = p.get("resolution")
        for name in ("negative_prompt", "person_generation", "enhance_prompt"):
            if p.get(name) is not None:
                kw[name] = p[name]
        if last:
            kw["last_frame"] = types.Image(image_bytes=last[0], mime_type=last[1])
        return source, kw

    async def _generate(self, run: ClipRun, request: int, count: int, saved: dict[str, Any] | None,
                        source: types.GenerateVideosSource, config_kw: dict[str, Any],
                        ) -> tuple[list[types.Video], Lease]:
        user_id = run.job["user_id"]
        tried: set[str] = set()
        name = saved["name"] if saved else None
        preferred = saved["key_id"] if saved else None
        while True:
            lease = await self.pool.acquire(user_id, frozenset(tried))
            if preferred and lease.key_id != preferred:
                # polling works from any key of the project; the stored one is only a preference
                preferred = None
            fields = {"job_id": run.job_id, "clip": run.index, "backend": "api"}
            try:
                if name is None:
                    config = types.GenerateVideosConfig(number_of_videos=count, **config_kw)
                    name = await self.gemini.submit(lease.secret, run.job["model"], source, config)
                    await run.svc.db.save_operation(run.job_id, run.index, request, name,
                                                    lease.key_id, count)
                    log.info("api.submitted", operation=name, **fields)
                op = await self._wait(run, lease, name)
            except KeyProblem as exc:
                tried.add(lease.key_id)
                if exc.invalid:
                    await self.pool.invalid(lease, exc.message, **fields)
                else:
                    await self.pool.cooling(lease, exc.message, exc.retry_after, **fields)
                continue
            await self.pool.ok(lease)
            return self._videos(run, request, op), lease

    async def _wait(self, run: ClipRun, lease: Lease, name: str) -> types.GenerateVideosOperation:
        started = time.monotonic()
        delay = min(FIRST_POLL, self.poll_seconds)
        while True:
            op = await self.gemini.poll(lease.secret, name)
            if op.done:
                return op
            elapsed = time.monotonic() - started
            await run.progress(int(90 * (1 - math.exp(-elapsed / EXPECTED_SECONDS))))
            await asyncio.sleep(delay)
            delay = min(delay * POLL_GROWTH, self.poll_seconds)

    def _videos(self, run: ClipRun, request: int,
                op: types.GenerateVideosOperation) -> list[types.Video]:
        if op.error:
            code = int(op.error.get("code", 2)) if isinstance(op.error, dict) else 2
            message = (op.error.get("message") if isinstance(op.error, dict) else None) or ""
            retryable = code in RETRYABLE_RPC
            if retryable:
                # a failed operation is spent: the next run must submit afresh
                asyncio.get_running_loop().create_task(
                    run.svc.db.forget_operation(run.job_id, run.index, request))
            raise GenerationFailed(f"Veo operation failed: {message}", code="operation_failed",
                                   retryable=retryable, details={"rpc_code": code})
        resp = op.response or op.result
        videos = [g.video for g in (resp.generated_videos or []) if g.video] if resp else []
        if not videos:
            reasons = list(resp.rai_media_filtered_reasons or []) if resp else []
            raise GenerationFailed(
                "the video was blocked by safety filters" + (f": {reasons[0]}" if reasons else ""),
                code="safety_filtered", retryable=False,
                details={"reasons": reasons,
                         "filtered_count": resp.rai_media_filtered_count if resp else None})
        return videos

    async def _download(self, lease: Lease, video: types.Video) -> AsyncIterator[bytes]:
        async for chunk in self.gemini.download(lease.secret, video):
            yield chunk
