"""A lease in Redis: at most one holder at a time, kept alive by renewal, lost when the holder
stops renewing. Used so that only one worker drives a given Flow account.

Renewal re-takes a lease that vanished (a Redis restart keeps nothing) as long as nobody else
took it meanwhile; a holder that finds another owner has lost it and must stop.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

_RENEW = """
local owner = redis.call('get', KEYS[1])
if owner == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
elseif owner == false then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, redis: Redis, key: str, owner: str, seconds: float) -> None:
        self.redis = redis
        self.key = key
        self.owner = owner
        self.ms = int(seconds * 1000)

    async def acquire(self) -> bool:
        return bool(await self.redis.set(self.key, self.owner, nx=True, px=self.ms))

    async def renew(self) -> bool:
        script: Any = self.redis.eval  # redis-py types eval's arguments as str only
        return bool(await script(_RENEW, 1, self.key, self.owner, str(self.ms)))

    async def release(self) -> None:
        script: Any = self.redis.eval
        await script(_RELEASE, 1, self.key, self.owner)

    async def holder(self) -> str | None:
        raw = await self.redis.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw
