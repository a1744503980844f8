import asyncio
import uuid

import asyncpg

from tests.harness import PG_ADMIN_DSN
from veo import db as dbmod


async def test_concurrent_migrations_apply_once() -> None:
    name = f"veo_mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
        pools = [await dbmod.connect(dsn, max_size=2) for _ in range(3)]
    except BaseException:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        raise
    try:
        results = await asyncio.gather(*(dbmod.migrate(p) for p in pools))
        applied = [r for r in results if r]
        assert len(applied) == 1, results  # exactly one runner applied the migrations
        assert await dbmod.migrate(pools[0]) == []  # idempotent
        versions = await pools[0].fetch("SELECT version FROM schema_migrations")
        assert len(versions) == len(applied[0])
        # statuses the API cannot describe are refused by the schema itself
        await pools[0].execute("INSERT INTO users (id, name) VALUES ('u', 'n')")
        try:
            await pools[0].execute(
                "INSERT INTO jobs (id, user_id, backend, model, params, status) "
                "VALUES ('j', 'u', 'api', 'm', '{}', 'pending')")
            raise AssertionError("a status outside the contract was accepted")
        except asyncpg.CheckViolationError:
            pass
    finally:
        for p in pools:
            await p.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
