"""Runs of a job (issue defects 1-6 and 15a): a retry, a re-queue or a resume is a fresh run
with its own clock and its full tries; a failed generation is never polled again; the creating
key polls; a failed heartbeat query is not a lost job; a stale run changes nothing; a timeout
leaves no clip running without an error; a partly refused clip is not a success.

Real PostgreSQL, Redis, storage, the arq worker in-process and the real google-genai client
against the fake Gemini API.

On the old design (19630cb) these fail (read from its code; its fake Gemini API spoke the
retired Veo protocol, so the files cannot run there unchanged): ``claim_job`` kept the first
run's ``started_at`` (``coalesce``) and ``fail_overdue`` timed a whole API job from it;
``retry_job`` kept ``attempts``; a failed operation stayed in ``operations`` and the next run
polled it again; operations were polled with whatever key ``pool.acquire`` handed out
("polling works from any key of the project"); the heartbeat loop had no ``try`` and ended on
its first failed query; clip progress and output rows were written without ``run_seq``; and
``fail_overdue`` left a timed-out job's clips ``running`` with no error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    Harness,
    add_key,
    api_env,
    clip_rows,
    fetch_output,
    get_job,
    job_row,
    make_user,
    new_key,
    polls_of,
    running,
    until,
)
from veo import jobs, names
from veo.db import Db, RunLost
from veo.gemini import KeyCheck
from veo.keypool import KeyPool
from veo.records import ApiKey, ErrorInfo, Params
from veo.sandbox import mp4
from veo.sandbox.gemini import FakeGemini
from veo.worker.context import ClipRun

TERMINAL = {"succeeded", "failed", "canceled"}


@contextlib.asynccontextmanager
async def service(pg_dsn: str, redis_url: str, tmp_path: Path, fake: FakeGemini,
                  **extra: str) -> AsyncIterator[Harness]:
    async with running(api_env(pg_dsn, redis_url, tmp_path / "store", fake.url, **extra)) as h:
        yield h


async def submit(h: Harness, token: str, body: dict[str, Any]) -> str:
    resp = await h.http.post("/api/jobs", json=body, headers=h.auth(token))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def user_with_key(h: Harness, name: str) -> tuple[str, str]:
    _, token = await make_user(h, name)
    key = new_key(name[:6])
    await add_key(h, token, key)
    return token, key


async def retry(h: Harness, token: str, job_id: str) -> None:
    resp = await h.http.post(f"/api/jobs/{job_id}/retry", headers=h.auth(token))
    assert resp.status_code == 202, resp.text


async def generations(h: Harness, job_id: str) -> list[dict[str, Any]]:
    rows = await h.svc.db.pool.fetch(
        "SELECT * FROM generations WHERE job_id = $1 ORDER BY clip, request", job_id)
    return [dict(r) for r in rows]


def interaction_of(fake: FakeGemini, n: int) -> str:
    return str(fake.creates()[n]["interaction"])


# ---- 1. a retry, a re-queue or a resume is a fresh run ------------------------------------------

async def test_user_retry_runs_on_its_own_clock(pg_dsn: str, redis_url: str, redis: Any,
                                                tmp_path: Path, fake_gemini: FakeGemini) -> None:
    """The first run failed; the user retries long after the clip budget would have run out
    counted from the first start: the retry must not be failed as a timeout at claim."""
    async with service(pg_dsn, redis_url, tmp_path, fake_gemini,
                       VEO_API_JOB_TIMEOUT="4") as h:
        token, _ = await user_with_key(h, "clock")
        fake_gemini.distinct_videos = False
        await h.start_worker()
        fake_gemini.force("fail-arg")  # a permanent failure: no automatic retry
        job_id = await submit(h, token, {"prompt": "run on your own clock",
                                         "duration_seconds": 3})
        first = await h.wait_job(token, job_id, TERMINAL)
        assert first["status"] == "failed" and first["error"]["code"] == "generation_failed"
        await asyncio.sleep(4.5)  # longer than the clip budget since the first start
        fake_gemini.delay = 1.0  # well inside the budget, but not instant
        await retry(h, token, job_id)
        done = await h.wait_job(token, job_id, TERMINAL)
        assert done["status"] == "succeeded", done
        assert done["error"] is None and done["attempts"] == 1
        assert datetime.fromisoformat(done["started_at"]) > \
            datetime.fromisoformat(first["started_at"]) + timedelta(seconds=4)
        assert len(fake_gemini.creates()) == 2


async def test_timeouts_are_per_clip_not_per_job(pg_dsn: str, redis_url: str, redis: Any,
                                                 tmp_path: Path,
                                                 fake_gemini: FakeGemini) -> None:
    """Nine clips, four at a time, take three clip lengths; each clip is well inside its
    budget, the job as a whole is not. A job-wide timeout kills it; a clip timeout must not."""
    async with service(pg_dsn, redis_url, tmp_path, fake_gemini,
                       VEO_API_JOB_TIMEOUT="5") as h:
        token, _ = await user_with_key(h, "perclip")
        await h.start_worker()
        fake_gemini.delay = 2.5
        fake_gemini.distinct_videos = False  # one cached picture: the fake's ffmpeg stays idle
        started = time.monotonic()
        job_id = await submit(h, token, {"clips": [{"prompt": f"clip {i}"} for i in range(9)],
                                         "duration_seconds": 3})
        done = await h.wait_job(token, job_id, TERMINAL, timeout=60)
        assert done["status"] == "succeeded", done["error"]
        assert time.monotonic() - started > 5  # the job did outlive one clip's budget
        assert [c["status"] for c in done["clips"]] == ["succeeded"] * 9
        assert len(fake_gemini.creates()) == 9


async def test_user_retry_gets_every_try_again(pg_dsn: str, redis_url: str, redis: Any,
                                               tmp_path: Path, fake_gemini: FakeGemini) -> None:
    async with service(pg_dsn, redis_url, tmp_path, fake_gemini, VEO_MAX_ATTEMPTS="2") as h:
        token, _ = await user_with_key(h, "tries")
        await h.start_worker()
        fake_gemini.force("fail", 2)  # a transient failure (rpc INTERNAL), twice
        job_id = await submit(h, token, {"prompt": "try, try again"})
        spent = await h.wait_job(token, job_id, TERMINAL, timeout=30)
        assert spent["status"] == "failed" and spent["attempts"] == 2, spent
        assert spent["error"]["retryable"] is True
        fake_gemini.force("fail")  # the retry's first run fails once more ...
        await retry(h, token, job_id)
        # ... and is tried again, since this retry has its own two tries
        await until(lambda: len(fake_gemini.creates()) == 3, 15, "the retry's first create")
        again = await h.wait_job(token, job_id, {"queued", "failed"}, timeout=15)
        assert again["status"] == "queued", again
        assert again["attempts"] == 1 and again["error"]["code"] == "generation_failed"
        done = await h.wait_job(token, job_id, TERMINAL, timeout=30)
        assert done["status"] == "succeeded" and done["attempts"] == 2, done
        assert len(fake_gemini.creates()) == 4


async def test_resumed_job_runs_on_its_own_clock(pg_dsn: str, redis_url: str, redis: Any,
                                                 tmp_path: Path,
                                                 fake_gemini: FakeGemini) -> None:
    """A job paused for longer than the clip budget (every key cooling) resumes by itself and
    is not failed as a timeout when it is claimed again."""
    async with service(pg_dsn, redis_url, tmp_path, fake_gemini, VEO_API_JOB_TIMEOUT="3",
                       VEO_KEY_MAX_WAIT_SECONDS="0", VEO_KEY_WINDOW_SECONDS="5",
                       VEO_KEY_COOLDOWN_MAX_SECONDS="10") as h:
        token, key = await user_with_key(h, "resume")
        fake_gemini.distinct_videos = False
        fake_gemini.key(key, quota=1, window=5.0)  # as the pool's window: one create per 5 s
        await h.start_worker()
        first = await submit(h, token, {"prompt": "takes the quota", "duration_seconds": 3})
        await until(lambda: len(fake_gemini.creates()) == 1, 10)
        second = await submit(h, token, {"prompt": "waits for the key", "duration_seconds": 3})
        paused = await h.wait_job(token, second, {"paused"}, timeout=10)
        assert paused["paused_reason"] == "api_keys_exhausted"
        done = await h.wait_job(token, second, TERMINAL, timeout=30)
        assert done["status"] == "succeeded", done
        # paused longer than a clip's budget, then claimed again: not a timeout
        assert datetime.fromisoformat(done["started_at"]) > \
            datetime.fromisoformat(paused["created_at"]) + timedelta(seconds=3)
        assert done["attempts"] == 1  # the pause gave its attempt back
        assert (await h.wait_job(token, first, TERMINAL))["status"] == "succeeded"


@pytest.mark.parametrize("path", ["user_retry", "retry_failed_flow", "orphan_requeue",
                                  "resume_after_pause"])
async def test_every_fresh_run_gets_a_fresh_clock(harness: Harness, path: str) -> None:
    """The same rule at the level of the lifecycle, for every path back to the queue: a job
    whose first run started an hour ago is claimed again, and the reconciler's timeout check
    does not fail the new run (nor its clip) for the old run's age."""
    h = harness
    life, db, pool = h.svc.lifecycle, h.svc.db, h.svc.db.pool
    user, _ = await make_user(h, f"fresh-{path}")
    backend = "flow" if path == "retry_failed_flow" else "api"
    job = await db.create_job(
        user_id=user.id, backend=backend, requested_backend=backend,
        model="gemini-omni-1.1-flash", params=Params(), webhook_url=None,
        idempotency_key=None, request_hash=None,
        flow_account="fresh" if backend == "flow" else None, continuity="none",
        final_options=None, clips=[jobs.ClipSpec(prompt="once upon a time")])
    run = await life.claim(job.id, job.run_seq, "worker-1")
    assert run is not None and await db.start_clip(job.id, run.run_seq, 0)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await pool.execute("UPDATE jobs SET started_at = $2, heartbeat_at = $2 WHERE id = $1",
                       job.id, hour_ago)
    await pool.execute("UPDATE clips SET started_at = $2 WHERE job_id = $1", job.id, hour_ago)
    # the first run ends in whatever way leads back to the queue
    if path in ("user_retry", "retry_failed_flow"):
        assert await life.finish(run, "failed", ErrorInfo(code="x", message="first run"))
        if path == "user_retry":
            row = await life.retry(await db.get_job(job.id))  # type: ignore[arg-type]
        else:
            assert await life.retry_failed_flow("fresh") == 1
            row = await db.get_job(job.id)  # type: ignore[assignment]
    elif path == "orphan_requeue":
        assert await life.requeue_orphans() >= 1
        row = await db.get_job(job.id)  # type: ignore[assignment]
    else:
        assert await life.pause(run, jobs.PausedReason.API_KEYS_EXHAUSTED)
        await pool.execute("INSERT INTO api_keys (id, user_id, fingerprint, key_enc, last4) "
                           "VALUES ($1, $2, $3, 'x', 'abcd')",
                           f"key_fresh_{path}", user.id, f"fp-{path}")
        assert await life.resume_due() >= 1
        row = await db.get_job(job.id)  # type: ignore[assignment]
    assert row is not None and row.status == "queued"
    again = await life.claim(job.id, row.run_seq, "worker-2")
    assert again is not None and await db.start_clip(job.id, again.run_seq, 0)
    assert again.started_at is not None and again.started_at > hour_ago + timedelta(minutes=59)
    await life.fail_overdue()
    after = await job_row(h, job.id)
    assert after["status"] == "running" and after["error"] is None, after
    assert (await clip_rows(h, job.id))[0]["status"] == "running"
    if path in ("user_retry", "retry_failed_flow"):
        assert again.attempts == 1  # every try again
    await pool.execute("DELETE FROM api_keys WHERE id = $1", f"key_fresh_{path}")


# ---- 2. a failed generation is never polled again ------------------------------------------------

async def test_retryable_failure_forgets_its_generation(harness: Harness,
                                                        fake_gemini: FakeGemini) -> None:
    h = harness
    token, _ = await user_with_key(h, "forget")
    await h.start_worker()
    fake_gemini.force("fail")  # the interaction ends "failed" with rpc 13: worth a new try
    job_id = await submit(h, token, {"prompt": "second time lucky"})

    async def requeued() -> bool:
        row = await job_row(h, job_id)
        return bool(row["status"] == "queued" and row["run_seq"] > 0)

    await until(requeued, 15, "the failed run to hand the job back")
    # the run is over and the job waits for its back-off: the spent generation is gone
    # already (forgotten before the hand-back, not by a task that may or may not run)
    assert (await job_row(h, job_id))["error"]["code"] == "generation_failed"
    assert await generations(h, job_id) == []
    done = await h.wait_job(token, job_id, TERMINAL, timeout=30)
    assert done["status"] == "succeeded", done
    assert len(fake_gemini.creates()) == 2
    failed, fresh = interaction_of(fake_gemini, 0), interaction_of(fake_gemini, 1)
    ident = mp4.identify(await fetch_output(h, token, done["outputs"][0]["url"]))
    assert ident is not None and ident["interaction"] == fresh
    last_poll_of_failed = max(r["at"] for r in polls_of(fake_gemini, failed))
    assert last_poll_of_failed < fake_gemini.creates()[1]["at"]  # never polled after that
    assert [g["handle"] for g in await generations(h, job_id)] == [fresh]


async def test_user_retry_submits_afresh_after_a_permanent_failure(
        harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    token, _ = await user_with_key(h, "refail")
    await h.start_worker()
    fake_gemini.force("fail-arg")
    job_id = await submit(h, token, {"prompt": "again, properly"})
    assert (await h.wait_job(token, job_id, TERMINAL))["status"] == "failed"
    failed = interaction_of(fake_gemini, 0)
    polls_before = len(polls_of(fake_gemini, failed))
    await retry(h, token, job_id)
    done = await h.wait_job(token, job_id, TERMINAL)
    assert done["status"] == "succeeded", done
    assert len(fake_gemini.creates()) == 2
    assert len(polls_of(fake_gemini, failed)) == polls_before


async def test_a_poll_that_cannot_reach_google_keeps_the_generation(
        harness: Harness, fake_gemini: FakeGemini) -> None:
    """The API is unreachable for a moment while a generation is being polled. The generation
    itself did not fail: the next run must resume polling it, not pay for a second one."""
    h = harness
    token, _ = await user_with_key(h, "blip")
    fake_gemini.delay = 3.0
    await h.start_worker()
    job_id = await submit(h, token, {"prompt": "through a network blip"})
    await until(lambda: fake_gemini.creates(), 10, "the create")
    handle = interaction_of(fake_gemini, 0)
    await until(lambda: polls_of(fake_gemini, handle), 10, "a first poll")
    port = int(fake_gemini.url.rsplit(":", 1)[1])
    await fake_gemini.stop()
    try:
        await until(lambda: status_is(h, job_id, "queued"), 30, "the run to give up")
    finally:
        await fake_gemini.start(port=port)
    done = await h.wait_job(token, job_id, TERMINAL, timeout=40)
    assert done["status"] == "succeeded", done
    assert len(fake_gemini.creates()) == 1, "a poll's network error cost a second generation"


async def status_is(h: Harness, job_id: str, status: str) -> bool:
    return bool((await job_row(h, job_id))["status"] == status)


# ---- 3. the creating key polls ----------------------------------------------------------------

async def _two_key_user(h: Harness, fake: FakeGemini, name: str) -> tuple[str, dict[str, str]]:
    _, token = await make_user(h, name)
    keys = {}
    for tag in ("one", "two"):
        key = new_key(tag)
        keys[key] = (await add_key(h, token, key))["id"]
    return token, keys


async def _started_then_stopped(h: Harness, fake: FakeGemini, token: str) -> tuple[str, str]:
    """A job whose generation exists when its worker stops (handing the run back)."""
    fake.delay = 30.0
    await h.start_worker()
    job_id = await submit(h, token, {"prompt": "polled by its maker"})
    await until(lambda: fake.creates(), 10, "the create")
    handle = interaction_of(fake, 0)
    await until(lambda: polls_of(fake, handle), 10, "a first poll")
    await h.stop_worker()
    assert (await job_row(h, job_id))["status"] == "queued"
    return job_id, handle


async def test_the_creating_key_polls_after_a_restart(harness: Harness,
                                                      fake_gemini: FakeGemini) -> None:
    h = harness
    token, _ = await _two_key_user(h, fake_gemini, "poller")
    job_id, handle = await _started_then_stopped(h, fake_gemini, token)
    maker = fake_gemini.creates()[0]["key"]
    fake_gemini.finish_all()
    await h.start_worker()
    done = await h.wait_job(token, job_id, TERMINAL)
    assert done["status"] == "succeeded", done
    assert len(fake_gemini.creates()) == 1  # resumed, not paid twice
    assert {r["key"] for r in polls_of(fake_gemini, handle)} == {maker}
    assert all(r["status"] == 200 for r in polls_of(fake_gemini, handle))


async def test_a_deleted_creating_key_means_a_fresh_generation(
        harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    token, keys = await _two_key_user(h, fake_gemini, "deleter")
    job_id, handle = await _started_then_stopped(h, fake_gemini, token)
    maker = fake_gemini.creates()[0]["key"]
    other = next(k for k in keys if k != maker)
    resp = await h.http.delete(f"/api/keys/{keys[maker]}", headers=h.auth(token))
    assert resp.status_code in (200, 204), resp.text
    fake_gemini.delay = 0.2
    await h.start_worker()
    done = await h.wait_job(token, job_id, TERMINAL)
    assert done["status"] == "succeeded", done
    assert [c["key"] for c in fake_gemini.creates()] == [maker, other]
    # nobody else may see the maker's interaction: it was not polled with the other key
    assert {r["key"] for r in polls_of(fake_gemini, handle)} == {maker}


async def test_a_creating_key_revoked_mid_generation(harness: Harness,
                                                     fake_gemini: FakeGemini) -> None:
    h = harness
    token, keys = await _two_key_user(h, fake_gemini, "revoked")
    fake_gemini.delay = 2.0
    await h.start_worker()
    job_id = await submit(h, token, {"prompt": "outlives its key"})
    await until(lambda: fake_gemini.creates(), 10, "the create")
    maker = fake_gemini.creates()[0]["key"]
    fake_gemini.key(maker, invalid=True)  # Google now refuses the key that made it
    done = await h.wait_job(token, job_id, TERMINAL)
    assert done["status"] == "succeeded", done
    assert [c["key"] for c in fake_gemini.creates()] == [maker, next(k for k in keys
                                                                     if k != maker)]
    listed = {k["id"]: k for k in (await h.http.get("/api/keys", headers=h.auth(token)))
              .json()["data"]}
    assert listed[keys[maker]]["status"] == "invalid"


# ---- 4. a failed heartbeat query is not a lost job ------------------------------------------

FAULT_SQL = """
CREATE TABLE IF NOT EXISTS test_heartbeat_faults (job_id text PRIMARY KEY,
                                                  until timestamptz NOT NULL);
CREATE OR REPLACE FUNCTION test_fail_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM test_heartbeat_faults f
             WHERE f.job_id = NEW.id AND f.until > clock_timestamp()) THEN
    RAISE EXCEPTION 'injected: heartbeat of % refused', NEW.id;
  END IF;
  RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS test_fail_heartbeat ON jobs;
CREATE TRIGGER test_fail_heartbeat BEFORE UPDATE OF heartbeat_at ON jobs FOR EACH ROW
  WHEN (OLD.status = 'running' AND NEW.status = 'running')
  EXECUTE FUNCTION test_fail_heartbeat();
"""


async def test_failed_heartbeat_queries_do_not_end_the_heartbeat(
        harness: Harness, fake_gemini: FakeGemini, capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL refuses the job's heartbeat updates for a second (less than the stale
    period). The heartbeat goes on afterwards, so the reconciler never takes the job away."""
    h = harness
    pool = h.svc.db.pool
    token, _ = await user_with_key(h, "beat")
    fake_gemini.delay = 5.0
    await pool.execute(FAULT_SQL)
    try:
        await h.start_worker()
        job_id = await submit(h, token, {"prompt": "keep beating"})
        await until(lambda: status_is(h, job_id, "running"), 10)
        await asyncio.sleep(0.5)
        await pool.execute("INSERT INTO test_heartbeat_faults VALUES ($1, clock_timestamp() + "
                           "interval '1 second')", job_id)
        await asyncio.sleep(1.2)
        before = (await job_row(h, job_id))["heartbeat_at"]
        await asyncio.sleep(3 * h.settings.heartbeat_seconds + 0.3)
        row = await job_row(h, job_id)
        assert row["status"] == "running" and row["heartbeat_at"] > before, \
            "the heartbeat stopped after a failed query"
        done = await h.wait_job(token, job_id, TERMINAL, timeout=30)
    finally:
        await pool.execute("DROP TRIGGER IF EXISTS test_fail_heartbeat ON jobs")
    assert done["status"] == "succeeded", done
    row = await job_row(h, job_id)
    assert row["run_seq"] == 0 and row["attempts"] == 1  # never taken away
    assert len(fake_gemini.creates()) == 1
    logged = capsys.readouterr().out
    assert "job.heartbeat_failed" in logged  # said, not silent
    assert "reconciler.requeued" not in logged


# ---- 5. a stale run changes nothing ---------------------------------------------------------

async def _video(prompt: str) -> AsyncIterator[bytes]:
    data = await mp4.render({"prompt": prompt}, duration=3.0)
    for i in range(0, len(data), 65536):
        yield data[i:i + 65536]


@pytest.mark.parametrize("lost_by", ["orphaned", "canceled"])
async def test_a_stale_run_can_change_nothing(harness: Harness, lost_by: str) -> None:
    h = harness
    life, db, storage = h.svc.lifecycle, h.svc.db, h.svc.storage
    user_row, _ = await make_user(h, f"stale-{lost_by}")
    job = await db.create_job(
        user_id=user_row.id, backend="api", requested_backend="api",
        model="gemini-omni-1.1-flash", params=Params(), webhook_url=None,
        idempotency_key=None, request_hash=None, flow_account=None, continuity="none",
        final_options=None, clips=[jobs.ClipSpec(prompt="who owns me")])
    old = await life.claim(job.id, job.run_seq, "worker-old")
    assert old is not None and await db.start_clip(job.id, old.run_seq, 0)
    (clip,) = await db.clips_of_job(job.id)

    def clip_run(run: Any) -> ClipRun:
        return ClipRun(db=db, storage=storage, redis=h.svc.redis, job=run, clip=clip,
                       clips_total=1, progress_of={})

    stale = clip_run(old)
    await stale.save_generation(0, "v1_old_run", None, 1)
    await stale.progress(10)
    new = None
    if lost_by == "orphaned":
        # the old run's worker went silent: the reconciler gives the job to a new run
        await h.svc.db.pool.execute("UPDATE jobs SET heartbeat_at = now() - interval '1 hour' "
                                    "WHERE id = $1", job.id)
        assert await life.requeue_orphans() >= 1
        row = await db.get_job(job.id)
        assert row is not None
        new = await life.claim(job.id, row.run_seq, "worker-new")
        assert new is not None and await db.start_clip(job.id, new.run_seq, 0)
        fresh = clip_run(new)
        await fresh.save_generation(0, "v1_new_run", None, 1)
        await fresh.progress(30)
    else:
        await life.cancel(old)
    before_job, before_clip = await job_row(h, job.id), (await clip_rows(h, job.id))[0]
    gens_before = await generations(h, job.id)

    # every write of the stale run is refused or has no effect
    await stale.progress(80)
    with pytest.raises(RunLost):
        await stale.save_generation(0, "v1_stale", None, 1)
    await stale.forget_generation(0)
    with pytest.raises(RunLost):
        await stale.store_output(0, _video("stale"))
    assert not await db.set_clip(job.id, old.run_seq, 0, "succeeded", None, 100)
    assert not await db.start_clip(job.id, old.run_seq, 0)
    assert not await db.set_progress(job.id, old.run_seq, 90)
    assert not await life.finish(old, "succeeded")
    assert not await life.requeue(old, None, reason="stale")

    after_job, after_clip = await job_row(h, job.id), (await clip_rows(h, job.id))[0]
    assert after_job["progress"] == before_job["progress"]
    assert after_job["status"] == before_job["status"]
    assert after_job["run_seq"] == before_job["run_seq"]
    assert (after_clip["status"], after_clip["progress"]) == \
        (before_clip["status"], before_clip["progress"])
    assert await generations(h, job.id) == gens_before, "a stale run forgot a generation"
    assert await db.outputs_of_job(job.id) == []
    assert await storage.head(names.output(job.id, 0, 0)) is None
    assert await storage.list(names.staging_prefix(job.id)) == []

    if new is not None:  # the run that owns the job still writes
        await clip_run(new).store_output(0, _video("fresh"))
        (out,) = await db.outputs_of_job(job.id)
        assert await storage.head(out.object_key) is not None
        assert await life.finish(new, "succeeded")


# ---- 6. a timeout leaves no clip running without an error ------------------------------------

async def test_timed_out_job_leaves_its_clip_failed_with_the_error(
        pg_dsn: str, redis_url: str, redis: Any, tmp_path: Path,
        fake_gemini: FakeGemini) -> None:
    async with service(pg_dsn, redis_url, tmp_path, fake_gemini,
                       VEO_API_JOB_TIMEOUT="1") as h:
        token, _ = await user_with_key(h, "slowpoke")
        fake_gemini.delay = 20.0
        await h.start_worker()
        job_id = await submit(h, token, {"clips": [{"prompt": "too slow"},
                                                   {"prompt": "also too slow"}]})
        done = await h.wait_job(token, job_id, TERMINAL, timeout=20)
        assert done["status"] == "failed" and done["error"]["code"] == "timeout", done
        await asyncio.sleep(1.0)  # the run notices it lost the job; it must not undo this
        body = await get_job(h, token, job_id)
        assert body["status"] == "failed"
        for clip in body["clips"]:
            assert clip["status"] == "failed", body["clips"]
            assert clip["error"] is not None and clip["error"]["code"] == "timeout"
            assert clip["error"]["message"] == body["error"]["message"]
        rows = await clip_rows(h, job_id)
        assert all(r["status"] != "running" for r in rows)


# ---- 15a. a partly refused clip is not a success ---------------------------------------------

async def test_partial_safety_refusal_fails_the_clip(harness: Harness,
                                                     fake_gemini: FakeGemini) -> None:
    h = harness
    token, _ = await user_with_key(h, "partial")
    await h.start_worker()
    fake_gemini.force("ok")
    fake_gemini.force("safety")  # the second of three variants is refused
    job_id = await submit(h, token, {"prompt": "three takes", "number_of_videos": 3})
    done = await h.wait_job(token, job_id, TERMINAL)
    assert done["status"] == "failed", done
    (clip,) = done["clips"]
    assert clip["status"] == "failed" and clip["error"]["code"] == "safety_filtered"
    assert done["error"]["code"] == "safety_filtered" and done["attempts"] == 1
    assert len(done["outputs"]) < 3  # not called a success with fewer variants
    assert (await job_row(h, job_id))["progress"] < 100


# ---- the key pool against PostgreSQL -----------------------------------------------------------

class CountingDb(Db):
    """The real repository, counting the pool's picks (a spy: behaviour unchanged)."""

    picks = 0

    async def pick_key(self, user_id: str, window: float,
                       exclude: Iterable[str] = ()) -> tuple[ApiKey, int] | None:
        self.picks += 1
        return await super().pick_key(user_id, window, exclude)


async def key_for(h: Harness, name: str, db: Db | None = None,
                  settings: Any = None) -> tuple[KeyPool, Any, ApiKey]:
    """A key pool over the real repository (or ``db``) and a user holding one accepted key."""
    pool = KeyPool(db or h.svc.db, h.svc.box, settings or h.settings)
    user, _ = await make_user(h, name)

    async def ok(key: str) -> KeyCheck:
        return KeyCheck("ok")

    return pool, user, await pool.add(user.id, new_key(name), None, ok)


async def test_waiting_for_a_full_window_after_a_cool_down_does_not_spin(
        harness: Harness) -> None:
    """A key refused once (429: its limit learned, a short cool-down) thaws while its window
    is still full. The pool must wait for the window (or pause), not re-pick in a busy loop:
    ``next_key_free`` must not answer with a cool-down that already ended."""
    h = harness
    settings = dataclasses.replace(h.settings, key_window_seconds=1.5,
                                   key_max_wait_seconds=5.0)
    db = CountingDb(h.svc.db.pool)
    pool, user, _ = await key_for(h, "thawed", db, settings)
    first = await pool.acquire(user.id)
    now = time.monotonic()
    await pool.spent(first, now, now)  # Google accepted that call
    second = await pool.acquire(user.id)  # the pool does not know the limit yet
    await pool.refused(second, "429 RESOURCE_EXHAUSTED", retry_after=0.05)
    await asyncio.sleep(0.2)  # the cool-down is over; the window (one use) is not
    db.picks = 0
    started = time.monotonic()
    third = await asyncio.wait_for(pool.acquire(user.id), 10)
    waited = time.monotonic() - started
    assert third.key_id == first.key_id and 0.8 < waited < 2.0
    assert db.picks <= 5, f"{db.picks} picks in {waited:.2f} s: a busy loop"


async def test_next_key_free_is_now_when_a_use_aged_out_meanwhile(harness: Harness) -> None:
    """Between a failed pick and the ``next_key_free`` query a use can age out of a full key's
    window: the key has room again, so the answer is now. Counting only keys still full
    answered with a later slot (a slot lost) or, with no other key, with nothing (a pause)."""
    h = harness
    _, user, row = await key_for(h, "aged")
    await h.svc.db.pool.execute("UPDATE api_keys SET window_limit = 1 WHERE id = $1", row.id)
    # its one use in the window ages out 50 ms from now
    await h.svc.db.pool.execute(
        "INSERT INTO api_key_uses (key_id, at, confirmed) "
        "VALUES ($1, clock_timestamp() - make_interval(secs => 1.95), true)", row.id)
    assert await h.svc.db.pick_key(user.id, 2.0) is None  # full
    await asyncio.sleep(0.1)
    at = await h.svc.db.next_key_free(user.id, 2.0)
    assert at is not None and abs(at.timestamp() - time.time()) < 0.5


async def test_a_use_is_dated_from_its_send_not_its_pick(harness: Harness) -> None:
    """A key picked, then sent late (frames to read, a busy loop), is counted by Google from
    the send: dated from the pick it would free its slot early (a 429 next window)."""
    h = harness
    pool, user, _ = await key_for(h, "dated")
    lease = await pool.acquire(user.id)
    picked_at = await h.svc.db.pool.fetchval("SELECT at FROM api_key_uses WHERE id = $1",
                                             lease.use_id)
    # sent 3 s after the pick, answered 1 s later: counted from 3.5 s after the pick
    await pool.spent(lease, lease.picked + 3.0, lease.picked + 4.0)
    row = await h.svc.db.pool.fetchrow("SELECT at, confirmed FROM api_key_uses WHERE id = $1",
                                       lease.use_id)
    assert row["confirmed"]
    assert (row["at"] - picked_at).total_seconds() == pytest.approx(3.5, abs=0.05)


async def test_limit_learned_in_a_burst_grows_as_earlier_calls_are_confirmed(
        harness: Harness) -> None:
    """Four calls in flight on a new key (limit unknown); the fifth is refused before any of
    the four is answered. Learning from confirmed uses alone gives no limit, or one too low
    for good; the four, picked before the refusal and accepted, make the limit 4."""
    h = harness
    pool, user, row = await key_for(h, "burst")
    flying = [await pool.acquire(user.id) for _ in range(4)]
    refused = await pool.acquire(user.id)
    now = time.monotonic()
    await pool.spent(flying[0], now, now)  # one answered before the 429 was
    await pool.refused(refused, "429 RESOURCE_EXHAUSTED", retry_after=0.01)
    limit = await h.svc.db.pool.fetchval("SELECT window_limit FROM api_keys WHERE id = $1",
                                         row.id)
    assert limit == 1
    for lease in flying[1:]:
        await pool.spent(lease, now, time.monotonic())
    limit = await h.svc.db.pool.fetchval("SELECT window_limit FROM api_keys WHERE id = $1",
                                         row.id)
    assert limit == 4
