"""Shared set-up for benchmarks: a throwaway database, a redis-server of their own (so two runs
on one machine never share a queue), local storage."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator

import asyncpg

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://127.0.0.1:5432/postgres")
SECRET = "bench-secret-key-that-is-long-enough-0123456789"


@contextlib.asynccontextmanager
async def environment(**extra: str) -> AsyncIterator[dict[str, str]]:
    name = f"veo_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    tmp = tempfile.mkdtemp(prefix="veo-bench-")
    from tests.harness import RedisServer

    server = RedisServer()
    await asyncio.to_thread(server.start)
    env = {"DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + "/" + name, "REDIS_URL": server.url,
           "STORAGE_DIR": tmp, "VEO_SECRET_KEY": SECRET, "FLOW_BACKEND_ENABLED": "false",
           "LOG_FORMAT": "json", **extra}
    try:
        yield env
    finally:
        await asyncio.to_thread(server.stop)
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
        await asyncio.to_thread(__import__("shutil").rmtree, tmp, True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
