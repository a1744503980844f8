"""The repository: the only module that talks to PostgreSQL.

SQL lives in ``sql/``: numbered migrations in ``sql/migrations`` and named queries
(``-- name: foo``) in ``sql/queries``. Methods return the typed records of ``veo.records``.
Guarded transitions return the updated record or ``None`` when the guard did not match; the
caller decides what a lost race means. Only ``veo.lifecycle`` calls the methods that change a
job's status (``tests/unit/test_architecture.py`` checks).

A query that finds its connection dropped (a PostgreSQL restart, ``pg_terminate_backend``) is
retried once on a fresh connection, so a blip answers slowly instead of with a 500.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg
import msgspec

from veo.errors import Conflict
from veo.records import (
    ApiKey,
    Clip,
    ErrorInfo,
    Final,
    FinalOptions,
    FlowAccount,
    Generation,
    Job,
    OutboxItem,
    Output,
    QueueCounts,
    Upload,
    User,
)

MIGRATION_LOCK = 7_202_611  # pg advisory lock id held while migrating
RECONCILER_LOCK = 7_202_612  # held by the one reconciler that runs at a time

T = TypeVar("T")

# what a dropped or refused connection looks like to asyncpg. A pooled connection that was idle
# when the server terminated it may still hold the server's goodbye unread: the next query on it
# fails with InternalClientError ("cannot switch to state N; another operation (2) is in
# progress", MagicStack/asyncpg#1069) before anything is sent.
_DROPPED = (asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.CannotConnectNowError,
            asyncpg.exceptions.ConnectionFailureError,
            asyncpg.exceptions.InterfaceError,
            asyncpg.exceptions.InternalClientError,
            ConnectionError, OSError)


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


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection goes through on its way back to the pool, besides asyncpg's own
    rollback of an open transaction. asyncpg's default also sends ``RESET ALL``, closes
    cursors, unlistens and unlocks: a round trip on every release, some 40% of this service's
    queries. The service leaves no session state behind: it sets no session variables, opens
    no cursors, listens to nothing, and its one session-level advisory lock is released by
    ``Db.advisory_lock`` itself, which ends the session when it cannot."""


async def connect(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init,
                                     reset=_keep_session, command_timeout=60)
    assert pool is not None
    return pool


async def ensure_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` if the server allows; True if it was created.
    Raises the server's error when it refuses (the caller words it for people)."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.exceptions.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    base, _, name = dsn.rpartition("/")
    name, _, query = name.partition("?")
    admin = await asyncpg.connect(f"{base}/postgres" + (f"?{query}" if query else ""))
    try:
        await admin.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
    except asyncpg.exceptions.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    return True


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


def _conv(record: asyncpg.Record, kind: type[T]) -> T:
    return msgspec.convert(dict(record), kind)


def _conv_opt(record: asyncpg.Record | None, kind: type[T]) -> T | None:
    return None if record is None else _conv(record, kind)


def _json(value: Any) -> Any:
    """Structs to plain data for a jsonb parameter."""
    return None if value is None else msgspec.to_builtins(value)


class RunLost(Exception):
    """The run writing this no longer owns its job (canceled, or given to a newer run)."""


class Fence:
    """Writes that must happen under a run's lock (see ``Db.fenced``)."""

    def __init__(self, conn: asyncpg.Connection, queries: dict[str, str]) -> None:
        self._conn = conn
        self._q = queries

    async def upsert_output(self, job_id: str, clip: int, variant: int, object_key: str,
                            size: int, sha256: str, *, poster_key: str | None,
                            duration_seconds: float | None,
                            content_type: str = "video/mp4") -> Output:
        row = await self._conn.fetchrow(self._q["upsert_output"], new_id("out"), job_id, clip,
                                        variant, object_key, size, sha256, content_type,
                                        poster_key, duration_seconds)
        assert row is not None
        return _conv(row, Output)

    async def drop_outputs_from(self, job_id: str, clip: int, variant: int) -> list[Output]:
        rows = await self._conn.fetch(self._q["drop_outputs_from"], job_id, clip, variant)
        return [_conv(r, Output) for r in rows]

    async def finish_final(self, job_id: str, status: str, *, object_key: str | None = None,
                           poster_key: str | None = None, duration: float | None = None,
                           size: int | None = None, sha256: str | None = None,
                           error: ErrorInfo | None = None,
                           selection: list[dict[str, Any]] | None = None) -> Final:
        row = await self._conn.fetchrow(self._q["finish_final"], job_id, status, object_key,
                                        poster_key, duration, size, sha256, _json(error),
                                        selection)
        assert row is not None
        return _conv(row, Final)


class Db:
    """Repository over one asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.q = load_queries(sql_dir() / "queries")

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except _DROPPED:
            # every pooled connection may be dead (a server restart): replace them all
            await self.pool.expire_connections()
            return await call()

    async def _one(self, name: str, *args: Any) -> asyncpg.Record | None:
        return await self._retry(lambda: self.pool.fetchrow(self.q[name], *args))

    async def _all(self, name: str, *args: Any) -> list[asyncpg.Record]:
        return await self._retry(lambda: self.pool.fetch(self.q[name], *args))

    async def _val(self, name: str, *args: Any) -> Any:
        return await self._retry(lambda: self.pool.fetchval(self.q[name], *args))

    async def _exec(self, name: str, *args: Any) -> int:
        status = await self._retry(lambda: self.pool.execute(self.q[name], *args))
        return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0

    async def _tx(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async def attempt() -> T:
            async with self.pool.acquire() as conn, conn.transaction():
                return await work(cast(asyncpg.Connection, conn))
        return await self._retry(attempt)

    async def ping(self) -> None:
        await self._retry(lambda: self.pool.fetchval("SELECT 1"))

    @contextlib.asynccontextmanager
    async def advisory_lock(self, lock_id: int) -> AsyncIterator[bool]:
        """Try a session advisory lock; yields whether this process holds it."""
        async with self.pool.acquire() as conn:
            got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_id))
            try:
                yield got
            finally:
                if got:
                    try:
                        await conn.execute("SELECT pg_advisory_unlock($1)", lock_id)
                    except _DROPPED:
                        pass  # the session, and the lock with it, is gone already
                    except BaseException:
                        # the lock must not outlive this block on a pooled connection
                        conn.terminate()
                        raise

    # ---- users and tokens
    async def create_user(self, name: str, is_admin: bool, token_hash: str) -> User:
        row = await self._one("create_user", new_id("usr"), name, is_admin, token_hash)
        assert row is not None
        return _conv(row, User)

    async def user_by_token_hash(self, token_hash: str) -> User | None:
        return _conv_opt(await self._one("user_by_token_hash", token_hash), User)

    async def user_by_name(self, name: str) -> User | None:
        return _conv_opt(await self._one("user_by_name", name), User)

    async def user_by_id(self, user_id: str) -> User | None:
        return _conv_opt(await self._one("user_by_id", user_id), User)

    async def add_token(self, user_id: str, token_hash: str) -> None:
        await self._exec("add_token", token_hash, user_id)

    async def revoke_tokens(self, user_id: str) -> list[str]:
        return [r["token_hash"] for r in await self._all("revoke_tokens", user_id)]

    async def bootstrap_admin(self, token_hash: str) -> None:
        await self._exec("upsert_bootstrap_admin", token_hash)

    # ---- api keys
    async def insert_key(self, *, user_id: str | None, label: str | None, fingerprint: str,
                         key_enc: str, last4: str, status: str = "active",
                         last_error: str | None = None) -> ApiKey | None:
        return _conv_opt(await self._one("insert_key", new_id("key"), user_id, label,
                                         fingerprint, key_enc, last4, status, last_error),
                         ApiKey)

    async def key_by_fingerprint(self, user_id: str | None, fingerprint: str) -> ApiKey | None:
        return _conv_opt(await self._one("key_by_fingerprint", user_id, fingerprint), ApiKey)

    async def get_key(self, key_id: str) -> ApiKey | None:
        return _conv_opt(await self._one("get_key", key_id), ApiKey)

    async def list_keys(self, user_id: str) -> list[ApiKey]:
        return [_conv(r, ApiKey) for r in await self._all("list_keys", user_id)]

    async def delete_key(self, key_id: str, user_id: str) -> bool:
        return await self._one("delete_key", key_id, user_id) is not None

    async def all_keys(self) -> list[ApiKey]:
        return [_conv(r, ApiKey) for r in await self._all("all_keys")]

    async def update_key_enc(self, key_id: str, new: str, old: str) -> bool:
        return await self._exec("update_key_enc", key_id, new, old) == 1

    async def pick_key(self, user_id: str, window: float,
                       exclude: Iterable[str] = ()) -> tuple[ApiKey, int] | None:
        """A usable key with room in its window, and the id of the use reserved on it."""
        async def work(conn: asyncpg.Connection) -> tuple[ApiKey, int] | None:
            await conn.execute(self.q["lock_key_picks"])
            row = await conn.fetchrow(self.q["pick_key"], user_id, list(exclude), window)
            return None if row is None else (_conv(row, ApiKey), int(row["use_id"]))
        return await self._tx(work)

    async def next_key_free(self, user_id: str, window: float) -> datetime | None:
        at: datetime | None = await self._val("next_key_free", user_id, window)
        return at

    async def key_refused(self, key_id: str, use_id: int, window: float) -> int | None:
        """Give back a refused call's use; returns the key's limit as now learned."""
        row = await self._one("key_refused", key_id, use_id, window)
        return None if row is None else row["window_limit"]

    async def date_use(self, use_id: int, after_pick: float, window: float) -> None:
        await self._exec("date_use", use_id, after_pick, window)

    async def give_back_use(self, use_id: int) -> None:
        await self._exec("give_back_use", use_id)

    async def prune_key_uses(self, older_than: float) -> None:
        await self._exec("prune_key_uses", older_than)

    async def key_stats(self, user_id: str) -> tuple[int, int, datetime | None]:
        """(keys not invalid, keys ready now, when the first cooling key is ready)."""
        row = await self._one("usable_key_stats", user_id)
        assert row is not None
        return int(row["not_invalid"]), int(row["ready"]), row["next_ready"]

    async def cool_key(self, key_id: str, base_seconds: float, max_seconds: float,
                       error: str, retry_after: float | None = None,
                       ) -> tuple[datetime, int] | None:
        row = await self._one("cool_key", key_id, base_seconds, error, max_seconds, retry_after)
        return None if row is None else (row["cooling_until"], row["cool_streak"])

    async def invalidate_key(self, key_id: str, error: str) -> bool:
        return await self._one("invalidate_key", key_id, error) is not None

    async def key_succeeded(self, key_id: str) -> None:
        await self._exec("key_succeeded", key_id)

    async def key_counts(self) -> dict[str, int]:
        return {r["status"]: int(r["n"]) for r in await self._all("key_counts")}

    async def available_keys(self) -> int:
        return int(await self._val("available_keys"))

    # ---- uploads
    async def insert_upload(self, upload_id: str, user_id: str, object_key: str,
                            content_type: str, width: int, height: int, size: int,
                            sha256: str) -> Upload:
        row = await self._one("insert_upload", upload_id, user_id, object_key, content_type,
                              width, height, size, sha256)
        assert row is not None
        return _conv(row, Upload)

    async def uploads_by_ids(self, ids: list[str], user_id: str) -> dict[str, Upload]:
        return {r["id"]: _conv(r, Upload) for r in await self._all("uploads_by_ids", ids,
                                                                     user_id)}

    # ---- jobs: reads
    async def create_job(self, *, user_id: str, backend: str, requested_backend: str,
                         model: str, params: Any, webhook_url: str | None,
                         idempotency_key: str | None, request_hash: str | None,
                         flow_account: str | None, continuity: str,
                         final_options: FinalOptions | None, clips: list[Any]) -> Job:
        """Insert a job, its clips and its final atomically. ``clips`` are ``ClipSpec``s."""
        try:
            row = await self._one(
                "insert_job", new_id("job"), user_id, backend, requested_backend, model,
                _json(params), webhook_url, idempotency_key, request_hash, flow_account,
                continuity, _json(final_options),
                [c.prompt for c in clips], [c.first_frame for c in clips],
                [c.last_frame for c in clips],
                [json.dumps(c.reference_images or []) for c in clips],
                [c.extend_from for c in clips])
        except asyncpg.UniqueViolationError:
            raise _IdempotentReplay() from None
        assert row is not None
        return _conv(row, Job)

    async def job_by_idempotency(self, user_id: str, key: str) -> Job | None:
        return _conv_opt(await self._one("job_by_idempotency", user_id, key), Job)

    async def get_job(self, job_id: str) -> Job | None:
        return _conv_opt(await self._one("get_job", job_id), Job)

    async def list_jobs(self, user_id: str, status: str | None,
                        cursor: tuple[datetime, str] | None, limit: int) -> list[Job]:
        rows = await self._all("list_jobs", user_id, status, cursor[0] if cursor else None,
                               cursor[1] if cursor else None, limit)
        return [_conv(r, Job) for r in rows]

    async def details(self, job_ids: list[str],
                      ) -> tuple[list[Clip], list[Output], dict[str, Final]]:
        """Clips, outputs and finals of several jobs (three indexed reads)."""
        clips = [_conv(r, Clip) for r in await self._all("clips_of_jobs", job_ids)]
        outputs = [_conv(r, Output) for r in await self._all("outputs_of_jobs", job_ids)]
        finals = {r["job_id"]: _conv(r, Final)
                  for r in await self._all("finals_of_jobs", job_ids)}
        return clips, outputs, finals

    async def clips_of_job(self, job_id: str) -> list[Clip]:
        return [_conv(r, Clip) for r in await self._all("clips_of_job", job_id)]

    async def outputs_of_job(self, job_id: str) -> list[Output]:
        return [_conv(r, Output) for r in await self._all("outputs_of_jobs", [job_id])]

    async def get_output(self, output_id: str, job_id: str) -> Output | None:
        return _conv_opt(await self._one("get_output", output_id, job_id), Output)

    async def output_of_user(self, output_id: str, user_id: str) -> Output | None:
        return _conv_opt(await self._one("output_of_user", output_id, user_id), Output)

    async def get_final(self, job_id: str) -> Final | None:
        return _conv_opt(await self._one("get_final", job_id), Final)

    async def queued_jobs(self, limit: int = 1000) -> list[Job]:
        return [_conv(r, Job) for r in await self._all("queued_jobs", limit)]

    async def queue_status(self, account: str | None = None) -> QueueCounts:
        row = await self._one("queue_status", account)
        assert row is not None
        return _conv(row, QueueCounts)

    async def active_counts(self) -> list[tuple[str, str, str, int]]:
        return [(r["backend"], r["status"], r["reason"], int(r["n"]))
                for r in await self._all("active_counts")]

    # ---- jobs: transitions (called by veo.lifecycle only)
    async def _job(self, name: str, *args: Any) -> Job | None:
        return _conv_opt(await self._one(name, *args), Job)

    async def _jobs(self, name: str, *args: Any) -> list[Job]:
        return [_conv(r, Job) for r in await self._all(name, *args)]

    async def claim_job(self, job_id: str, run_seq: int, worker_id: str) -> Job | None:
        return await self._job("claim_job", job_id, run_seq, worker_id)

    async def heartbeat(self, job_id: str, run_seq: int) -> bool:
        return await self._exec("heartbeat", job_id, run_seq) == 1

    async def finish_job(self, job_id: str, run_seq: int, status: str,
                         error: ErrorInfo | None) -> Job | None:
        async def work(conn: asyncpg.Connection) -> Job | None:
            row = await conn.fetchrow(self.q["finish_job"], job_id, run_seq, status,
                                      _json(error))
            if row is not None and status == "failed":
                await conn.execute(self.q["fail_open_clips"], job_id, _json(error))
            return _conv_opt(row, Job)
        return await self._tx(work)

    async def requeue_running(self, job_id: str, run_seq: int,
                              error: ErrorInfo | None = None, *,
                              refund: bool = False) -> Job | None:
        async def work(conn: asyncpg.Connection) -> Job | None:
            row = await conn.fetchrow(self.q["requeue_running"], job_id, run_seq, _json(error),
                                      refund)
            if row is not None:
                await conn.execute(self.q["requeue_running_clips"], job_id)
            return _conv_opt(row, Job)
        return await self._tx(work)

    async def pause_job(self, job_id: str, run_seq: int, reason: str,
                        resume_at: datetime | None = None) -> Job | None:
        async def work(conn: asyncpg.Connection) -> Job | None:
            row = await conn.fetchrow(self.q["pause_job"], job_id, run_seq, reason, resume_at)
            if row is not None:
                await conn.execute(self.q["requeue_running_clips"], job_id)
            return _conv_opt(row, Job)
        return await self._tx(work)

    async def pause_queued_flow(self, account: str, reason: str,
                                resume_at: datetime | None = None) -> list[Job]:
        return await self._jobs("pause_queued_flow", account, reason, resume_at)

    async def resume_flow(self, account: str, reason: str) -> list[Job]:
        return await self._jobs("resume_flow", account, reason)

    async def resume_api_due(self) -> list[Job]:
        return await self._jobs("resume_api_due")

    async def cancel_job(self, job_id: str) -> Job | None:
        async def work(conn: asyncpg.Connection) -> Job | None:
            row = await conn.fetchrow(self.q["cancel_job"], job_id)
            if row is not None:
                await conn.execute(self.q["cancel_open_clips"], job_id)
                await conn.execute(self.q["fail_running_final"], job_id, json.dumps(
                    {"code": "canceled", "message": "canceled by the user", "retryable": False}))
            return _conv_opt(row, Job)
        return await self._tx(work)

    async def _fresh_run(self, conn: asyncpg.Connection, job_id: str) -> None:
        # generations first: which clips are unfinished is read before they are reset
        await conn.execute(self.q["drop_unfinished_generations"], job_id)
        await conn.execute(self.q["reset_unfinished_clips"], job_id)

    async def retry_job(self, job_id: str) -> Job | None:
        async def work(conn: asyncpg.Connection) -> Job | None:
            row = await conn.fetchrow(self.q["retry_job"], job_id)
            if row is not None:
                await self._fresh_run(conn, job_id)
            return _conv_opt(row, Job)
        return await self._tx(work)

    async def retry_failed_flow(self, account: str | None = None) -> list[Job]:
        async def work(conn: asyncpg.Connection) -> list[Job]:
            rows = await conn.fetch(self.q["retry_failed_flow"], account)
            for r in rows:
                await self._fresh_run(conn, r["id"])
            return [_conv(r, Job) for r in rows]
        return await self._tx(work)

    async def redo_clip(self, job_id: str, idx: int, prompt: str | None) -> Job | None:
        """Queue one clip of a finished job again (its old variants stay until replaced)."""
        async def work(conn: asyncpg.Connection) -> Job | None:
            row = await conn.fetchrow(self.q["rework_job"], job_id)
            if row is None:
                return None
            await conn.execute(self.q["forget_clip_generations"], job_id, idx)
            await conn.execute(self.q["mark_redo"], job_id, idx, prompt)
            await self._fresh_run(conn, job_id)
            final = await conn.fetchrow(self.q["get_final"], job_id)
            if final is not None:
                await conn.execute(self.q["reset_final"], job_id, final["options"])
            return _conv(row, Job)
        return await self._tx(work)

    async def rebuild_final(self, job_id: str, options: FinalOptions) -> Job | None:
        async def work(conn: asyncpg.Connection) -> Job | None:
            row = await conn.fetchrow(self.q["rework_job"], job_id)
            if row is None:
                return None
            await conn.execute(self.q["reset_final"], job_id, _json(options))
            await self._fresh_run(conn, job_id)
            return _conv(row, Job)
        return await self._tx(work)

    async def delete_job(self, job_id: str) -> bool:
        return await self._one("delete_job", job_id) is not None

    async def requeue_orphans(self, stale_seconds: float) -> list[Job]:
        async def work(conn: asyncpg.Connection) -> list[Job]:
            rows = await conn.fetch(self.q["requeue_orphans"], stale_seconds)
            for r in rows:
                await conn.execute(self.q["requeue_running_clips"], r["id"])
            return [_conv(r, Job) for r in rows]
        return await self._tx(work)

    async def fail_overdue(self, api_timeout: float, flow_timeout: float,
                           final_timeout: float) -> list[Job]:
        """Fail jobs whose running clip (or final) ran past its budget; the clips and the
        final that were running carry the same error."""
        async def work(conn: asyncpg.Connection) -> list[Job]:
            rows = list(await conn.fetch(self.q["fail_overdue"], api_timeout, flow_timeout))
            rows += await conn.fetch(self.q["fail_overdue_finals"], final_timeout)
            for r in rows:
                await conn.execute(self.q["fail_running_clips"], r["id"], r["error"])
                await conn.execute(self.q["fail_running_final"], r["id"], r["error"])
            return [_conv(r, Job) for r in rows]
        return await self._tx(work)

    # ---- writes of a run (fenced by run_seq)
    async def set_progress(self, job_id: str, run_seq: int, progress: int) -> bool:
        return await self._exec("set_progress", job_id, run_seq, progress) == 1

    async def start_clip(self, job_id: str, run_seq: int, idx: int) -> bool:
        return await self._exec("start_clip", job_id, idx, run_seq) == 1

    async def set_clip(self, job_id: str, run_seq: int, idx: int, status: str,
                       error: ErrorInfo | None = None, progress: int = 0) -> bool:
        return await self._exec("set_clip", job_id, idx, status, _json(error), progress,
                                run_seq) == 1

    async def set_clip_progress(self, job_id: str, run_seq: int, idx: int,
                                progress: int) -> None:
        await self._exec("set_clip_progress", job_id, idx, progress, run_seq)

    @contextlib.asynccontextmanager
    async def fenced(self, job_id: str, run_seq: int) -> AsyncIterator[Fence]:
        """A transaction holding the job's row lock while this run still owns the job;
        raises ``RunLost`` when it does not. Keep what runs inside short (a server-side copy
        of an object, a few rows): heartbeats of the job wait for it."""
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(self.q["lock_run"], job_id, run_seq) is None:
                raise RunLost(job_id)
            yield Fence(cast(asyncpg.Connection, conn), self.q)

    async def save_generation(self, job_id: str, run_seq: int, clip: int, request: int,
                              handle: str, key_id: str | None, samples: int) -> bool:
        return await self._one("save_generation", job_id, clip, request, handle, key_id,
                               samples, run_seq) is not None

    async def generations_of_clip(self, job_id: str, clip: int) -> list[Generation]:
        return [_conv(r, Generation)
                for r in await self._all("generations_of_clip", job_id, clip)]

    async def forget_generation(self, job_id: str, run_seq: int, clip: int,
                                request: int) -> bool:
        return await self._exec("forget_generation", job_id, clip, request, run_seq) == 1

    async def select_variant(self, job_id: str, idx: int, variant: int) -> Clip | None:
        return _conv_opt(await self._one("select_variant", job_id, idx, variant), Clip)

    async def start_final(self, job_id: str, run_seq: int) -> Final | None:
        return _conv_opt(await self._one("start_final", job_id, run_seq), Final)

    # ---- flow accounts
    async def flow_account(self, account: str) -> FlowAccount | None:
        return _conv_opt(await self._one("flow_account", account), FlowAccount)

    async def flow_accounts(self) -> list[FlowAccount]:
        return [_conv(r, FlowAccount) for r in await self._all("flow_accounts")]

    async def flow_state_loaded(self, account: str, etag: str | None, verified: bool) -> None:
        await self._exec("flow_state_loaded", account, etag, verified)

    async def flow_verified(self, account: str) -> None:
        await self._exec("flow_verified", account)

    async def flow_needs_auth(self, account: str) -> None:
        await self._exec("flow_needs_auth", account)

    async def cool_account(self, account: str, base_seconds: float,
                           max_seconds: float) -> FlowAccount:
        row = await self._one("cool_account", account, base_seconds, max_seconds)
        assert row is not None
        return _conv(row, FlowAccount)

    async def account_rested(self, account: str) -> bool:
        return await self._one("account_rested", account) is not None

    async def account_ok(self, account: str) -> None:
        await self._exec("account_ok", account)

    async def set_canary(self, account: str, report: dict[str, Any]) -> None:
        await self._exec("set_canary", account, report)

    # ---- outbox (webhooks, alerts)
    async def add_outbox(self, item_id: str, kind: str, payload: dict[str, Any], *,
                         job_id: str | None = None, url: str | None = None) -> bool:
        return await self._one("add_outbox", item_id, kind, job_id, url, payload) is not None

    async def claim_outbox(self, limit: int, lease_seconds: float) -> list[OutboxItem]:
        return [_conv(r, OutboxItem)
                for r in await self._all("claim_outbox", limit, lease_seconds)]

    async def outbox_delivered(self, item_id: str) -> None:
        await self._exec("outbox_delivered", item_id)

    async def outbox_retry(self, item_id: str, delay: float, error: str) -> None:
        await self._exec("outbox_retry", item_id, delay, error)

    async def outbox_abandoned(self, item_id: str, error: str) -> None:
        await self._exec("outbox_abandoned", item_id, error)

    async def get_outbox(self, item_id: str) -> OutboxItem | None:
        return _conv_opt(await self._one("get_outbox", item_id), OutboxItem)

    async def raise_cause(self, kind: str, scope: str) -> bool:
        return await self._one("raise_cause", kind, scope) is not None

    async def clear_cause(self, kind: str, scope: str) -> bool:
        return await self._one("clear_cause", kind, scope) is not None


class _IdempotentReplay(Conflict):
    def __init__(self) -> None:
        super().__init__("a job with this Idempotency-Key exists", code="idempotency_replay")
