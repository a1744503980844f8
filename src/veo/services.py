"""Builds the real adapters in one place, for the web lifespan, the worker and the CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from veo import db as dbmod
from veo import logs
from veo.config import Settings
from veo.crypto import Box
from veo.storage import Storage, from_settings


@dataclasses.dataclass
class Services:
    settings: Settings
    db: dbmod.Db
    redis: ArqRedis
    storage: Storage
    box: Box

    async def close(self) -> None:
        await self.storage.close()
        await self.redis.aclose()
        await self.db.pool.close()


def token_hash(token: str) -> str:
    # Tokens are 256 random bits, so a plain hash is enough and survives secret rotation.
    return hashlib.sha256(token.encode()).hexdigest()


@contextlib.asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[Services]:
    """Services for the length of one command (CLI, veo-auth, rotation), closed after."""
    svc = await build_services(settings)
    try:
        yield svc
    finally:
        await svc.close()


async def build_services(settings: Settings, *, migrate: bool = True,
                         pool_size: int = 10) -> Services:
    logs.register_secret(settings.admin_token)
    for key in settings.gemini_api_keys:
        logs.register_secret(key)
    pool = await dbmod.connect(settings.database_url, max_size=pool_size)
    try:
        if migrate:
            await dbmod.migrate(pool)
        db = dbmod.Db(pool)
        redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    except BaseException:
        await pool.close()
        raise
    box = Box(settings.secret_key)
    services = Services(settings=settings, db=db, redis=redis, storage=from_settings(settings),
                        box=box)
    if settings.admin_token:
        await pool.execute(dbmod.Q["upsert_bootstrap_admin"], token_hash(settings.admin_token))
    return services
