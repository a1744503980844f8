"""Job change notices over Redis pub/sub, for Server-Sent Events.

Workers ``publish`` a small notice (job id, status, progress) on one channel; listeners re-read
the job from PostgreSQL, which stays the record. Each web process holds ONE subscription
(``Hub``) and fans notices out in memory to its open streams, so a thousand streams cost one
Redis connection, and a user may hold only a bounded number of streams at once.

A notice that cannot be published (Redis down) is dropped: a stream also re-reads the job on
its keep-alive tick, so it catches up without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from redis.asyncio import Redis

from veo import logs, names

log = logs.get_logger("veo.events")


class Notice(msgspec.Struct, frozen=True):
    job_id: str
    status: str
    progress: int | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Notice).decode


async def publish(redis: Redis, job_id: str, status: str, progress: int | None = None) -> None:
    try:
        await redis.publish(names.EVENTS_CHANNEL, _encode(Notice(job_id, status, progress)))
    except Exception as exc:  # a notice is a hint; the record is in PostgreSQL
        log.warning("events.publish_failed", job_id=job_id, error=type(exc).__name__)


class TooManyStreams(Exception):
    pass


class Hub:
    """One subscription per process, fanned out to per-job listener queues."""

    RECONNECT_SECONDS = 1.0  # wait before re-subscribing after Redis went away

    def __init__(self, redis: Redis, *, per_user: int) -> None:
        self.redis = redis
        self.per_user = per_user
        self._listeners: dict[str, set[asyncio.Queue[Notice]]] = defaultdict(set)
        self._streams_of: dict[str, int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None
        self.received = 0

    @property
    def open_streams(self) -> int:
        return sum(self._streams_of.values())

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="events-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _run(self) -> None:
        while True:
            pubsub: Any = self.redis.pubsub()
            try:
                await pubsub.subscribe(names.EVENTS_CHANNEL)
                async for msg in pubsub.listen():
                    if msg.get("type") != "message":
                        continue
                    try:
                        notice = _decode(msg["data"])
                    except msgspec.DecodeError:
                        continue
                    self.received += 1
                    for q in tuple(self._listeners.get(notice.job_id, ())):
                        q.put_nowait(notice)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("events.subscription_lost", error=type(exc).__name__)
                await asyncio.sleep(self.RECONNECT_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    @contextlib.asynccontextmanager
    async def listen(self, user_id: str, job_id: str) -> AsyncIterator[asyncio.Queue[Notice]]:
        """A queue of this job's notices for one stream; refuses a user's stream past the cap."""
        if self._streams_of[user_id] >= self.per_user:
            raise TooManyStreams(user_id)
        self._streams_of[user_id] += 1
        q: asyncio.Queue[Notice] = asyncio.Queue(maxsize=0)
        self._listeners[job_id].add(q)
        try:
            yield q
        finally:
            self._listeners[job_id].discard(q)
            if not self._listeners[job_id]:
                del self._listeners[job_id]
            self._streams_of[user_id] -= 1
            if not self._streams_of[user_id]:
                del self._streams_of[user_id]
