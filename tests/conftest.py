"""Shared fixtures: a throwaway PostgreSQL database per test session, a redis-server of its own
per session, a real S3 server (moto_server) on loopback. Nothing depends on leftovers, and two
test runs on one machine never touch each other's data."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.harness import PG_ADMIN_DSN, SECRET, RedisServer, free_port
from veo import db as dbmod
from veo.sandbox.flow import FakeFlow
from veo.sandbox.gemini import FakeGemini

__all__ = ["SECRET", "free_port"]


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    name = f"veo_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(create())
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(drop())


@pytest.fixture
async def own_database() -> AsyncIterator[str]:
    """A database of this test's own, for tests whose rows would change what later tests
    sharing the session database see (an operator key, key counts)."""
    name = f"veo_sandbox_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await dbmod.connect(pg_dsn, max_size=20)
    await dbmod.migrate(p)
    yield p
    await p.close()


@pytest.fixture
async def db(pool: asyncpg.Pool) -> dbmod.Db:
    return dbmod.Db(pool)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.from_url(redis_url)
    await r.flushdb()
    yield r
    await r.flushdb()
    await r.aclose()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    import boto3

    name = f"veo-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test",
                 aws_secret_access_key="test", region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    fake = FakeGemini()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def fake_flow() -> AsyncIterator[FakeFlow]:
    fake = FakeFlow()
    fake.delay = 0.4
    await fake.start()
    yield fake
    await fake.stop()
