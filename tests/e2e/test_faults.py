"""Faults of the processes around a job (issue defects 10 and 14, and the issue's "done when"):
real ``arq veo.worker.ApiSettings`` worker processes killed with SIGKILL or stopped with SIGTERM,
a real restart of the redis-server the service uses, PostgreSQL dropping the service's
connections (``pg_terminate_backend``), and runs a worker took from arq but never claimed.

Each ends with every job completed exactly once: one generation paid per clip at the fake
Gemini API (``creates()``), one output per clip, one ``job.succeeded`` per job.

On the old design (19630cb) these fail (read from its code): arq's poll loop ended on the first
Redis connection error, so the worker process stayed up without taking work after a restart;
a run that a dead worker had taken from arq stayed behind arq's in-progress mark (a day: the
job timeout plus 10 s) since nothing shortened or freed it; and a query on a connection that
``pg_terminate_backend`` had dropped raised straight to the route (500), with no retry on a
fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from arq.constants import in_progress_key_prefix

from tests.harness import (
    PG_ADMIN_DSN,
    Harness,
    RedisServer,
    add_key,
    api_env,
    fetch_output,
    job_row,
    make_user,
    new_key,
    running,
    spawn_worker,
    stop_process,
    terminate_backends,
    until,
    worker_env,
)
from veo import names
from veo.sandbox import mp4
from veo.sandbox.gemini import FakeGemini
from veo.worker.settings import JOB_TIMEOUT, SHUTDOWN_GRACE

TERMINAL = {"succeeded", "failed", "canceled"}
API_WORKER = "veo.worker.ApiSettings"


def env_of(h: Harness, fake: FakeGemini, **extra: str) -> dict[str, str]:
    return worker_env(h, GEMINI_BASE_URL=fake.url, FLOW_BACKEND_ENABLED="false",
                      VEO_POLL_SECONDS="0.1", LOG_FORMAT="json", **extra)


@contextlib.asynccontextmanager
async def worker(env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """An API worker process for the length of the block (SIGTERM at the end, if alive)."""
    proc = await spawn_worker(env, log, API_WORKER)
    try:
        yield proc
    finally:
        await stop_process(proc, signal.SIGTERM, SHUTDOWN_GRACE + 20)


async def submit(h: Harness, token: str, prompt: str, **body: Any) -> str:
    resp = await h.http.post("/api/jobs", json={"prompt": prompt, **body},
                             headers=h.auth(token))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def wait_all(h: Harness, token: str, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    return [await h.wait_job(token, i, TERMINAL, timeout=timeout) for i in ids]


def events(log: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if f'"{name}"' not in line:
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("event") == name:
                out.append(record)
    return out


async def exactly_once(h: Harness, token: str, fake: FakeGemini, done: list[dict[str, Any]],
                       logs: list[Path]) -> None:
    """Every job succeeded once, with one paid generation and one output per clip, each
    output the video of its own prompt."""
    assert [d["status"] for d in done] == ["succeeded"] * len(done), \
        [(d["id"], d["status"], d["error"]) for d in done]
    prompts = [c["prompt"] for d in done for c in d["clips"]]
    assert len(fake.creates()) == len(prompts), "a clip was paid for twice"
    assert sorted(c["body"]["input"] for c in fake.creates()) == sorted(prompts)
    for d in done:
        assert len(d["outputs"]) == len(d["clips"])
        for out in d["outputs"]:
            ident = mp4.identify(await fetch_output(h, token, out["url"]))
            assert ident is not None and ident["prompt"] == d["clips"][out["clip"]]["prompt"]
    succeeded = [e["job_id"] for log in logs for e in events(log, "job.succeeded")]
    assert sorted(succeeded) == sorted(d["id"] for d in done)


async def user_with_key(h: Harness, name: str) -> str:
    _, token = await make_user(h, name)
    await add_key(h, token, new_key(name[:6]))
    return token


# ---- SIGKILL, SIGTERM ----------------------------------------------------------------------

async def test_sigkill_mid_generation_each_job_completes_once(
        harness: Harness, fake_gemini: FakeGemini, tmp_path: Path) -> None:
    h = harness
    token = await user_with_key(h, "killed")
    fake_gemini.delay = 4.0
    ids = [await submit(h, token, f"survive a kill {i}") for i in range(3)]
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = await spawn_worker(env_of(h, fake_gemini), first_log, API_WORKER)
    try:
        await until(lambda: len(fake_gemini.creates()) == 3, 30, "three creates")
        await asyncio.sleep(0.3)
        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        await stop_process(first, signal.SIGKILL)
    # the dead worker still holds them on paper
    assert [(await job_row(h, i))["status"] for i in ids] == ["running"] * 3
    fake_gemini.delay = 0.5
    async with worker(env_of(h, fake_gemini), second_log):
        done = await wait_all(h, token, ids, 40)
    await exactly_once(h, token, fake_gemini, done, [first_log, second_log])
    assert all(d["attempts"] == 2 for d in done)
    assert {e["job_id"] for e in events(second_log, "reconciler.requeued")} == set(ids)


async def test_sigterm_finishes_short_work_and_hands_long_work_back(
        harness: Harness, fake_gemini: FakeGemini, tmp_path: Path) -> None:
    h = harness
    token = await user_with_key(h, "termed")
    log = tmp_path / "term.log"
    proc = await spawn_worker(env_of(h, fake_gemini), log, API_WORKER)
    try:
        short = await submit(h, token, "short enough [slow:2]")
        long = await submit(h, token, f"longer than the grace [slow:{SHUTDOWN_GRACE + 30}]")
        await until(lambda: len(fake_gemini.creates()) == 2, 30, "both creates")
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), SHUTDOWN_GRACE + 15)
    finally:
        await stop_process(proc, signal.SIGKILL)
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert (await job_row(h, short))["status"] == "succeeded"  # allowed to finish
    handed_back = await job_row(h, long)
    assert handed_back["status"] == "queued" and handed_back["error"] is None
    assert [e["job_id"] for e in events(log, "job.requeued")
            if e.get("reason") == "shutdown"] == [long]
    fake_gemini.finish_all()
    async with worker(env_of(h, fake_gemini), log):
        done = await wait_all(h, token, [short, long], 40)
    await exactly_once(h, token, fake_gemini, done, [log])


# ---- a real Redis restart ------------------------------------------------------------------

@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_redis_restart(own_redis: RedisServer, pg_dsn: str, tmp_path: Path,
                             fake_gemini: FakeGemini) -> None:
    """Redis restarts empty (no persistence) while a job runs and while another is being
    created: the worker process rides it out and takes new work; the reconciler enqueues
    what the restart lost; every job completes once."""
    env = api_env(pg_dsn, own_redis.url, tmp_path / "store", fake_gemini.url)
    async with running(env) as h:
        token = await user_with_key(h, "restart")
        log = tmp_path / "worker.log"
        async with worker(env_of(h, fake_gemini), log) as proc:
            before = await submit(h, token, "before the restart")
            assert (await h.wait_job(token, before, TERMINAL, 30))["status"] == "succeeded"
            fake_gemini.delay = 3.0
            during = await submit(h, token, "running through the restart")
            await until(lambda: len(fake_gemini.creates()) == 2, 20, "the second create")
            own_redis.stop(signal.SIGKILL)
            # created while Redis is down: the row is the record, the enqueue is lost
            lost = await submit(h, token, "created while redis is down")
            await asyncio.sleep(1.0)
            own_redis.start()
            fake_gemini.delay = 0.5
            after = await submit(h, token, "after the restart")
            done = await wait_all(h, token, [before, during, lost, after], 60)
            assert proc.returncode is None, "the worker process died with Redis"
        await exactly_once(h, token, fake_gemini, done, [log])
        assert events(log, "worker.redis_unavailable") and events(log, "worker.redis_back")
        assert lost in {e["job_id"] for e in events(log, "reconciler.requeued")}


# ---- PostgreSQL drops the service's connections ----------------------------------------------

async def test_pg_terminate_backend_neither_500s_nor_loses_work(
        harness: Harness, fake_gemini: FakeGemini, pg_dsn: str, tmp_path: Path) -> None:
    h = harness
    database = pg_dsn.rsplit("/", 1)[1]
    token = await user_with_key(h, "dropped")
    log = tmp_path / "worker.log"
    fake_gemini.delay = 3.0
    async with worker(env_of(h, fake_gemini), log):
        ids = [await submit(h, token, f"through a failover {i}") for i in range(3)]
        await until(lambda: len(fake_gemini.creates()) == 3, 30, "three creates")
        for pause in (0.0, 0.05, 0.2, 0.0, 0.05, 0.2):
            # fill the web process's pool, so that idle connections are dropped too
            await reads(h, token, ids)
            assert await terminate_backends(PG_ADMIN_DSN, database) > 0
            await asyncio.sleep(pause)
            # every read right after the drop is answered, slowly perhaps, but never 500
            for resp in await reads(h, token, ids):
                assert resp.status_code == 200, resp.text
        done = await wait_all(h, token, ids, 60)
    await exactly_once(h, token, fake_gemini, done, [log])


async def reads(h: Harness, token: str, ids: list[str]) -> list[httpx.Response]:
    """Eight reads at once: they use several of the web process's pooled connections."""
    paths = [f"/api/jobs/{i}" for i in ids] + ["/api/jobs"] * (8 - len(ids))
    return list(await asyncio.gather(*(h.http.get(p, headers=h.auth(token)) for p in paths)))


# ---- runs taken from arq but never claimed -------------------------------------------------

async def test_a_run_stranded_before_its_worker_touched_it(
        harness: Harness, fake_gemini: FakeGemini, tmp_path: Path) -> None:
    """A worker took the run from arq (arq's in-progress mark, good for its job timeout plus
    10 s: a day here) and died before any of our code ran. The reconciler frees it within its
    period, not after arq's day."""
    h = harness
    token = await user_with_key(h, "strand")
    job_id = await submit(h, token, "taken and dropped")
    row = await job_row(h, job_id)
    mark = in_progress_key_prefix + names.arq_job_id(job_id, row["run_seq"])
    # exactly what arq's start_jobs writes when it takes a job (see arq.worker.start_jobs)
    await h.svc.redis.psetex(mark, (JOB_TIMEOUT + 10) * 1000, b"1")
    log = tmp_path / "worker.log"
    async with worker(env_of(h, fake_gemini), log):
        done = await h.wait_job(token, job_id, TERMINAL, timeout=15)
    assert done["status"] == "succeeded", done
    assert len(fake_gemini.creates()) == 1


async def test_a_worker_killed_between_taking_and_claiming(
        harness: Harness, fake_gemini: FakeGemini, tmp_path: Path) -> None:
    """A real worker takes the run and dies while its claim waits (the job's row is locked by
    someone else; the server then drops the dead worker's session): the next worker gets the
    run back within the run's short in-progress lease, not arq's day.

    The lease is ``queue.IN_PROGRESS_LEASE_MS`` (30 s, a constant), so this variant of defect 10
    (the worker died after its run shortened arq's mark) is recovered within 30 s, not within
    the reconciler's period as the issue asks; the variant above (died before) is."""
    from veo.queue import IN_PROGRESS_LEASE_MS

    h = harness
    token = await user_with_key(h, "claimless")
    admin = await asyncpg.connect(h.settings.database_url)
    tx = admin.transaction()
    await tx.start()
    job_id = await submit(h, token, "never claimed")
    await admin.fetchval("SELECT id FROM jobs WHERE id = $1 FOR UPDATE", job_id)
    log = tmp_path / "worker.log"
    first = await spawn_worker(env_of(h, fake_gemini), log, API_WORKER)
    waiting: list[int] = []
    try:
        async def claim_waiting() -> bool:
            waiting[:] = [r["pid"] for r in await h.svc.db.pool.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE '%UPDATE jobs%running%'")]
            return bool(waiting)

        await until(claim_waiting, 30, "the worker's claim to wait on the row lock")
        first.send_signal(signal.SIGKILL)
        await first.wait()
        # PostgreSQL would notice the dead client later; make it now, before the lock goes
        for pid in waiting:
            await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await stop_process(first, signal.SIGKILL)
        await tx.rollback()
        await admin.close()
    assert (await job_row(h, job_id))["status"] == "queued"  # taken, never claimed
    started = asyncio.get_running_loop().time()
    async with worker(env_of(h, fake_gemini), log):
        done = await h.wait_job(token, job_id, TERMINAL,
                                timeout=IN_PROGRESS_LEASE_MS / 1000 + 15)
        took = asyncio.get_running_loop().time() - started
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1 and len(fake_gemini.creates()) == 1
    assert took < IN_PROGRESS_LEASE_MS / 1000 + 10
