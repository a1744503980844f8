"""Builds the real adapters in one place, for the web lifespan, the worker and the CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from veo import catalog as catalogmod
from veo import db as dbmod
from veo import logs
from veo.catalog import Catalog
from veo.config import Settings
from veo.crypto import Box
from veo.errors import ConfigError
from veo.lifecycle import Lifecycle
from veo.storage import Storage, from_settings


@dataclasses.dataclass
class Services:
    settings: Settings
    db: dbmod.Db
    redis: ArqRedis
    storage: Storage
    box: Box
    catalog: Catalog
    lifecycle: Lifecycle

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


def _where(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


async def connect_database(settings: Settings, *, pool_size: int) -> asyncpg.Pool:
    """The pool, creating the database first when it does not exist and the server lets us;
    otherwise one clear error naming what to do."""
    try:
        created = await dbmod.ensure_database(settings.database_url)
    except asyncpg.exceptions.InsufficientPrivilegeError:
        raise ConfigError(f"the database {_where(settings.database_url)} does not exist and "
                          "this role may not create it: create it (`createdb`) or point "
                          "DATABASE_URL at one that exists") from None
    except (OSError, asyncpg.exceptions.PostgresError) as exc:
        raise ConfigError(f"cannot reach PostgreSQL at {_where(settings.database_url)} "
                          f"({type(exc).__name__}: {exc}); is it running, and is DATABASE_URL "
                          "right?") from None
    if created:
        logs.get_logger("veo.db").info("db.created", database=_where(settings.database_url))
    return await dbmod.connect(settings.database_url, max_size=pool_size)


async def build_services(settings: Settings, *, migrate: bool = True,
                         pool_size: int = 10) -> Services:
    logs.register_secret(settings.admin_token)
    for key in settings.gemini_api_keys:
        logs.register_secret(key)
    catalog = catalogmod.load(settings.models_file)
    pool = await connect_database(settings, pool_size=pool_size)
    try:
        if migrate:
            await dbmod.migrate(pool)
        db = dbmod.Db(pool)
        redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    except BaseException:
        await pool.close()
        raise
    box = Box(settings.secret_key)
    storage = from_settings(settings)
    services = Services(settings=settings, db=db, redis=redis, storage=storage, box=box,
                        catalog=catalog,
                        lifecycle=Lifecycle(db, redis, storage, settings, catalog, box))
    if settings.admin_token:
        await db.bootstrap_admin(token_hash(settings.admin_token))
    return services
