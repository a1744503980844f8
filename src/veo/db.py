"""The repository: the only module that talks to PostgreSQL.

SQL lives in ``sql/``: numbered migrations in ``sql/migrations`` and named queries
(``-- name: foo``) in ``sql/queries``. Guarded transitions return the updated row or ``None``
when the guard did not match; callers decide what a lost race means.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from veo.errors import Conflict

MIGRATION_LOCK = 7_202_611  # pg advisory lock id held while migrating
RECONCILER_LOCK = 7_202_612  # held by the one reconciler that runs at a time

Row = dict[str, Any]


def sql_dir() -> Path:
    env = os.environ.get("VEO_SQL_DIR")  # for installs where sql/ is not beside src/
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "sql" / "migrations").is_dir():
            return parent / "sql"
    raise RuntimeError("cannot find the sql/ directory; set VEO_SQL_DIR")


_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(directory: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        text = path.read_text()
        marks = list(_NAME.finditer(text))
        for i, mark in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            body = "\n".join(
                line for line in text[mark.end():end].strip().splitlines()
                if not line.lstrip().startswith("--")
            ).strip()
            if mark.group(1) in queries:
                raise RuntimeError(f"query {mark.group(1)} defined twice")
            queries[mark.group(1)] = body
    return queries


Q = load_queries(sql_dir() / "queries")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")


async def connect(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init,
                                     command_timeout=60)
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply pending migrations in one transaction under an advisory lock; return the applied."""
    applied_now: list[str] = []
    files = sorted((sql_dir() / "migrations").glob("*.sql"))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in files:
            version = path.stem
            if version in done:
                continue
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
    return applied_now


def _row(record: asyncpg.Record | None) -> Row | None:
    return dict(record) if record is not None else None


class Db:
    """Repository over one asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _one(self, name: str, *args: Any) -> Row | None:
        return _row(await self.pool.fetchrow(Q[name], *args))

    async def _all(self, name: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self.pool.fetch(Q[name], *args)]

    async def _exec(self, name: str, *args: Any) -> int:
        status = await self.pool.execute(Q[name], *args)
        return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    # users
    async def create_user(self, name: str, is_admin: bool, token_hash: str) -> Row:
        row = await self._one("create_user", new_id("usr"), name, is_admin, token_hash)
        assert row is not None
        return row

    async def user_by_token_hash(self, token_hash: str) -> Row | None:
        return await self._one("user_by_token_hash", token_hash)

    async def user_by_name(self, name: str) -> Row | None:
        return await self._one("user_by_name", name)

    # api keys
    async def insert_key(self, *, user_id: str | None, label: str | None, fingerprint: str,
                         key_enc: str, last4: str, status: str = "active",
                         last_error: str | None = None) -> Row | None:
        return await self._one("insert_key", new_id("key"), user_id, label, fingerprint, key_enc,
                               last4, status, last_error)

    async def key_by_fingerprint(self, user_id: str | None, fingerprint: str) -> Row | None:
        return await self._one("key_by_fingerprint", user_id, fingerprint)

    async def list_keys(self, user_id: str) -> list[Row]:
        await self._exec("thaw_keys")
        return await self._all("list_keys", user_id)

    async def delete_key(self, key_id: str, user_id: str) -> bool:
        return await self._one("delete_key", key_id, user_id) is not None

    async def all_keys(self) -> list[Row]:
        return await self._all("all_keys")

    async def update_key_enc(self, key_id: str, new: str, old: str) -> bool:
        return await self._exec("update_key_enc", key_id, new, old) == 1

    async def pick_key(self, user_id: str, exclude: Iterable[str] = ()) -> Row | None:
        return await self._one("pick_key", user_id, list(exclude))

    async def key_stats(self, user_id: str) -> Row:
        row = await self._one("usable_key_stats", user_id)
        assert row is not None
        return row

    async def cool_key(self, key_id: str, base_seconds: float, max_seconds: float,
                       error: str, retry_after: float | None = None) -> Row | None:
        return await self._one("cool_key", key_id, base_seconds, error, max_seconds,
                               retry_after)

    async def invalidate_key(self, key_id: str, error: str) -> bool:
        return await self._one("invalidate_key", key_id, error) is not None

    async def key_succeeded(self, key_id: str) -> None:
        await self._exec("key_succeeded", key_id)

    async def key_counts(self) -> dict[str, int]:
        await self._exec("thaw_keys")
        return {r["status"]: r["n"] for r in await self._all("key_counts")}

    async def available_keys(self) -> int:
        return int(await self.pool.fetchval(Q["available_keys"]))

    # uploads
    async def insert_upload(self, upload_id: str, user_id: str, object_key: str,
                            content_type: str, width: int, height: int, size: int,
                            sha256: str) -> Row:
        row = await self._one("insert_upload", upload_id, user_id, object_key, content_type,
                              width, height, size, sha256)
        assert row is not None
        return row

    async def uploads_by_ids(self, ids: list[str], user_id: str) -> dict[str, Row]:
        return {r["id"]: r for r in await self._all("uploads_by_ids", ids, user_id)}

    # jobs
    async def create_job(self, *, user_id: str, backend: str, requested_backend: str, model: str,
                         params: dict[str, Any], webhook_url: str | None,
                         idempotency_key: str | None, request_hash: str | None,
                         flow_account: str | None,
                         clips: list[tuple[str, str | None, str | None]]) -> tuple[Row, bool]:
        """Insert a job and its clips atomically; return (job, created)."""
        try:
            job = await self.pool.fetchrow(
                Q["insert_job"], new_id("job"), user_id, backend, requested_backend, model,
                params, webhook_url, idempotency_key, request_hash, flow_account,
                [c[0] for c in clips], [c[1] for c in clips], [c[2] for c in clips])
        except asyncpg.UniqueViolationError:
            raise _IdempotentReplay() from None
        assert job is not None
        return dict(job), True

    async def job_by_idempotency(self, user_id: str, key: str) -> Row | None:
        return await self._one("job_by_idempotency", user_id, key)

    async def get_job(self, job_id: str) -> Row | None:
        return await self._one("get_job", job_id)

    async def list_jobs(self, user_id: str, status: str | None, cursor: tuple[datetime, str] | None,
                        limit: int) -> list[Row]:
        return await self._all("list_jobs", user_id, status, cursor[0] if cursor else None,
                               cursor[1] if cursor else None, limit)

    async def clips_and_outputs(self, job_ids: list[str]) -> tuple[list[Row], list[Row]]:
        return (await self._all("clips_of_jobs", job_ids),
                await self._all("outputs_of_jobs", job_ids))

    async def clips_of_job(self, job_id: str) -> list[Row]:
        return await self._all("clips_of_job", job_id)

    async def get_output(self, output_id: str, job_id: str) -> Row | None:
        return await self._one("get_output", output_id, job_id)

    async def claim_job(self, job_id: str, run_seq: int, worker_id: str) -> Row | None:
        return await self._one("claim_job", job_id, run_seq, worker_id)

    async def heartbeat(self, job_id: str, run_seq: int) -> bool:
        return await self._exec("heartbeat", job_id, run_seq) == 1

    async def set_progress(self, job_id: str, run_seq: int, progress: int) -> bool:
        return await self._exec("set_progress", job_id, run_seq, progress) == 1

    async def finish_job(self, job_id: str, run_seq: int, status: str,
                         error: dict[str, Any] | None) -> Row | None:
        return await self._one("finish_job", job_id, run_seq, status, error)

    async def requeue_running(self, job_id: str, run_seq: int,
                              error: dict[str, Any] | None = None) -> Row | None:
        return await self._one("requeue_running", job_id, run_seq, error)

    async def pause_job(self, job_id: str, run_seq: int, reason: str,
                        resume_at: datetime | None = None) -> Row | None:
        return await self._one("pause_job", job_id, run_seq, reason, resume_at)

    async def pause_queued_flow(self, account: str) -> list[str]:
        return [r["id"] for r in await self._all("pause_queued_flow", account)]

    async def resume_flow(self, account: str) -> list[Row]:
        return await self._all("resume_flow", account)

    async def resume_api_due(self) -> list[Row]:
        return await self._all("resume_api_due")

    async def cancel_job(self, job_id: str) -> Row | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["cancel_job"], job_id)
            if row is not None:
                await conn.execute(Q["cancel_open_clips"], job_id)
        return _row(row)

    async def retry_job(self, job_id: str) -> Row | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(Q["retry_job"], job_id)
            if row is not None:
                await conn.execute(Q["reset_unfinished_clips"], job_id)
        return _row(row)

    async def retry_failed_flow(self, account: str | None = None) -> list[Row]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = [dict(r) for r in await conn.fetch(Q["retry_failed_flow"], account)]
            for r in rows:
                await conn.execute(Q["reset_unfinished_clips"], r["id"])
        return rows

    async def delete_job(self, job_id: str) -> bool:
        return await self._one("delete_job", job_id) is not None

    async def set_clip(self, job_id: str, run_seq: int, idx: int, status: str,
                       error: dict[str, Any] | None = None, progress: int = 0) -> None:
        await self._exec("set_clip", job_id, idx, status, error, progress, run_seq)

    async def set_clip_progress(self, job_id: str, idx: int, progress: int) -> None:
        await self._exec("set_clip_progress", job_id, idx, progress)

    async def upsert_output(self, job_id: str, clip: int, variant: int, object_key: str,
                            size: int, sha256: str, content_type: str = "video/mp4") -> Row:
        row = await self._one("upsert_output", new_id("out"), job_id, clip, variant, object_key,
                              size, sha256, content_type)
        assert row is not None
        return row

    async def save_operation(self, job_id: str, clip: int, request: int, name: str,
                             key_id: str | None, samples: int) -> None:
        await self._exec("save_operation", job_id, clip, request, name, key_id, samples)

    async def operations_of_clip(self, job_id: str, clip: int) -> list[Row]:
        return await self._all("operations_of_clip", job_id, clip)

    async def forget_operation(self, job_id: str, clip: int, request: int) -> None:
        await self._exec("forget_operation", job_id, clip, request)

    # reconciler
    async def queued_jobs(self, limit: int = 1000) -> list[Row]:
        return await self._all("queued_jobs", limit)

    async def requeue_orphans(self, stale_seconds: float) -> list[Row]:
        return await self._all("requeue_orphans", stale_seconds)

    async def fail_overdue(self, api_timeout: float, flow_timeout: float) -> list[Row]:
        return await self._all("fail_overdue", api_timeout, flow_timeout)

    async def queue_status(self) -> Row:
        row = await self._one("queue_status")
        assert row is not None
        return row

    async def duration_stats(self) -> list[Row]:
        return await self._all("duration_stats")

    async def status_counts(self) -> list[Row]:
        return await self._all("status_counts")

    # flow accounts
    async def flow_account(self, account: str) -> Row | None:
        return await self._one("flow_account", account)

    async def flow_state_loaded(self, account: str, etag: str | None, verified: bool) -> None:
        await self._exec("flow_state_loaded", account, etag, verified)

    async def flow_verified(self, account: str) -> None:
        await self._exec("flow_verified", account)

    async def flow_needs_auth(self, account: str) -> None:
        await self._exec("flow_needs_auth", account)


class _IdempotentReplay(Conflict):
    def __init__(self) -> None:
        super().__init__("a job with this Idempotency-Key exists", code="idempotency_replay")
