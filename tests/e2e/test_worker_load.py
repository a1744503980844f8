"""A worker with a backlog: the first runs reach Google at once, in queue order, and a poll of
the queue costs next to nothing while many runs are in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.harness import Harness, add_key, new_key, until
from veo import jobs
from veo.sandbox.gemini import FakeGemini
from veo.worker import runner

BACKLOG = 40


async def backlog(h: Harness, fake: FakeGemini) -> list[str]:
    """BACKLOG jobs waiting before the worker starts; their generations never end."""
    fake.delay = 600.0
    user, token = await h.user("backlog")
    await add_key(h, token, new_key("backlog"))
    ids = []
    for i in range(BACKLOG):
        job = await h.svc.lifecycle.create(
            user, jobs.JobRequest(prompt=f"backlog {i}", duration_seconds=4),
            idempotency_key=None, body_hash=str(i))
        ids.append(job[0].id)
    return ids


async def first_create_vs_claims(h: Harness, ids: list[str]) -> int:
    """How many jobs were claimed before the first generation was saved."""
    await until(lambda: h.svc.db.pool.fetchval(
        "SELECT count(*) >= 8 FROM generations WHERE job_id = ANY($1::text[])", ids), 30,
        "generations saved")
    first = await h.svc.db.pool.fetchval(
        "SELECT min(created_at) FROM generations WHERE job_id = ANY($1::text[])", ids)
    claimed: int = await h.svc.db.pool.fetchval(
        "SELECT count(*) FROM jobs WHERE id = ANY($1::text[]) AND started_at < $2", ids, first)
    return claimed


async def test_backlog_reaches_google_before_it_is_all_claimed(
        harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    ids = await backlog(h, fake_gemini)
    await h.start_worker()
    claimed = await first_create_vs_claims(h, ids)
    # admitted a few at a time, the first run creates after a handful of claims; started all
    # at once (arq hands the worker the whole backlog in one poll) every claim came first
    assert claimed <= 2 * runner.STARTING_AT_ONCE, claimed
    # and in queue order: the first generations are of jobs from the front of the queue (arq
    # orders by millisecond scores, ties by id, so only roughly)
    first = await h.svc.db.pool.fetch(
        "SELECT job_id FROM generations WHERE job_id = ANY($1::text[]) ORDER BY created_at "
        "LIMIT $2", ids, runner.STARTING_AT_ONCE)
    assert {r["job_id"] for r in first} <= set(ids[:BACKLOG // 2])


async def test_without_admission_every_claim_comes_first(
        harness: Harness, fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the same backlog with admission wide open claims (nearly) all of it first,
    which is what the test above guards against."""
    h = harness
    monkeypatch.setattr(runner, "STARTING_AT_ONCE", 10_000)
    ids = await backlog(h, fake_gemini)
    await h.start_worker()
    claimed = await first_create_vs_claims(h, ids)
    assert claimed > 2 * 4, claimed


async def test_poll_does_not_recheck_runs_of_this_worker(harness: Harness,
                                                         fake_gemini: FakeGemini) -> None:
    h = harness
    ids = await backlog(h, fake_gemini)
    await h.start_worker()
    await until(lambda: h.svc.db.pool.fetchval(
        "SELECT count(*) = $2 FROM generations WHERE job_id = ANY($1::text[])", ids, BACKLOG),
        30, "every job generating")
    worker = h.worker
    assert worker is not None
    pool: Any = worker.pool
    made = 0
    plain = pool.pipeline

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        made += 1
        return plain(*args, **kwargs)

    pool.pipeline = counting
    try:
        await asyncio.sleep(0.5)  # about 50 polls of the queue with 40 ids in it
    finally:
        del pool.pipeline
    # arq alone would open a WATCH transaction per id per poll: about 2,000 here
    assert made <= 5, made


async def test_stopping_with_runs_in_flight_hands_them_back_and_shuts_down(
        harness: Harness, fake_gemini: FakeGemini) -> None:
    """arq's close let a cancelled run's CancelledError out, skipping ``on_shutdown``."""
    h = harness
    ids = await backlog(h, fake_gemini)
    await h.start_worker()
    await until(lambda: h.svc.db.pool.fetchval(
        "SELECT count(*) >= 10 FROM generations WHERE job_id = ANY($1::text[])", ids),
        30, "jobs generating")
    worker = h.worker
    assert worker is not None
    services = worker.ctx["services"]
    await h.stop_worker()  # raises nothing
    assert services.db.pool.is_closing()  # on_shutdown ran
    statuses = await h.svc.db.pool.fetch(
        "SELECT DISTINCT status FROM jobs WHERE id = ANY($1::text[])", ids)
    assert {r["status"] for r in statuses} == {"queued"}
