"""From clips to a film: the frame that chains one clip to the next, and the final video.

Both read videos where they are stored (a local path or a presigned URL handed to ffmpeg) and
write results back as streams, so worker memory does not grow with video size. The final is a
step of the job's run: it is fenced like every other write, and a worker that dies while
building it leaves the job to the reconciler, whose next run builds it again.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from veo import events, logs, media, metrics, names
from veo.db import Db, RunLost
from veo.errors import GenerationFailed
from veo.jobs import error_info
from veo.records import Clip, Job, Output
from veo.storage import Storage
from veo.worker.context import Frame

log = logs.get_logger("veo.worker.film")


def selected_outputs(clips: list[Clip], outputs: list[Output]) -> list[Output]:
    """The output each clip's final segment uses, in clip order."""
    by_slot = {(o.clip, o.variant): o for o in outputs}
    chosen = []
    for c in clips:
        out = by_slot.get((c.idx, c.selected)) or by_slot.get((c.idx, 0))
        if out is None:
            raise GenerationFailed(f"clip {c.idx} has no output to use", code="final_failed")
        chosen.append(out)
    return chosen


def selection(chosen: list[Output]) -> list[dict[str, object]]:
    """What a final is made of, to tell later whether a pick or a redo made it stale."""
    return [{"clip": o.clip, "variant": o.variant, "sha256": o.sha256} for o in chosen]


async def chain_frame(db: Db, storage: Storage, job: Job, prev: int) -> Frame:
    """The last frame of the selected variant of clip ``prev``: the next clip's first frame."""
    clips = [c for c in await db.clips_of_job(job.id) if c.idx == prev]
    outputs = [o for o in await db.outputs_of_job(job.id) if o.clip == prev]
    (out,) = selected_outputs(clips, outputs)
    try:
        png = await media.last_frame(await storage.source(out.object_key))
    except media.MediaError as exc:
        raise GenerationFailed(f"could not take the last frame of clip {prev}: {exc.message}",
                               code="continuity_failed", retryable=False) from exc
    return Frame(png, "image/png")


async def build_final(db: Db, storage: Storage, redis: Redis, job: Job) -> None:
    """Stitch the selected variants into ``outputs/{job}/final.mp4`` (+ ``final.jpg``)."""
    final = await db.start_final(job.id, job.run_seq)
    if final is None:
        raise RunLost(job.id)
    await events.publish(redis, job.id, "running", job.progress)
    opts = final.options
    clips = await db.clips_of_job(job.id)
    chosen = selected_outputs(clips, await db.outputs_of_job(job.id))
    segments = [media.Segment(source=await storage.source(o.object_key),
                              trim_start_frames=opts.trim_start_frames,
                              trim_end_frames=opts.trim_end_frames) for o in chosen]
    started = time.monotonic()
    async with media.workdir() as tmp:
        out = tmp / "final.mp4"
        try:
            result = await media.build_final(segments, media.FinalOptions(
                transition="crossfade" if opts.transition == "crossfade" else "cut",
                crossfade_seconds=opts.crossfade_seconds,
                loudnorm=opts.loudnorm), out)
            poster = await media.poster(str(out))
        except media.MediaError as exc:
            async with db.fenced(job.id, job.run_seq) as fence:
                info = GenerationFailed(f"the final video could not be built: {exc.message}",
                                        code="final_failed")
                await fence.finish_final(job.id, "failed", error=error_info(info))
            raise info from exc
        key = names.staged(job.id, job.run_seq, "final.mp4")
        poster_key = names.staged(job.id, job.run_seq, "final.jpg")
        stored = await storage.put_stream(key, media.file_chunks(out), "video/mp4")
    await storage.put_bytes(poster_key, poster, "image/jpeg")
    try:
        async with db.fenced(job.id, job.run_seq) as fence:
            await storage.move(key, names.final(job.id))
            await storage.move(poster_key, names.final_poster(job.id))
            await fence.finish_final(job.id, "succeeded", object_key=names.final(job.id),
                                     poster_key=names.final_poster(job.id),
                                     duration=result.duration, size=stored.size,
                                     sha256=stored.sha256, selection=selection(chosen))
    except RunLost:
        await storage.delete(key)
        await storage.delete(poster_key)
        raise
    path = "stream_copy" if result.fast_path else "re_encode"
    metrics.FINALS.labels(path).observe(time.monotonic() - started)
    log.info("job.final_ready", job_id=job.id, backend=job.backend, clips=len(chosen),
             path=path, duration=round(result.duration, 3), size=stored.size)
    await events.publish(redis, job.id, "running", job.progress)

