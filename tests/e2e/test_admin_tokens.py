"""Operator-facing behaviour (issue defects 15b, 12, 7 and the metrics of 15): tokens can be
revoked and replaced; a missing stored object is a 404 in the error shape; ``veo migrate``
creates a missing database or says in one line what to do; full Gemini keys are never stored
or shown (both key shapes, Google's 403 texts that quote them); ``/metrics`` is
prometheus_client's, writes nothing and counts transitions.

On the old design (19630cb) these fail (read from its code): there were no token routes (a
user's token was a column of ``users``); an output whose object was gone was served with a
``FileResponse`` of a missing path (500); ``veo migrate`` connected straight to DATABASE_URL
(an asyncpg error for a missing database); a blocked key's 403 text, which quotes the key, was
stored as the key's ``last_error``; and ``/metrics`` was hand-written text built by queries on
every scrape, one of them an ``UPDATE`` (``thaw_keys``), with no counters.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.harness import (
    PG_ADMIN_DSN,
    SECRET,
    Harness,
    add_key,
    api_env,
    make_user,
    new_aq_key,
    new_key,
    running,
)
from veo.sandbox.gemini import FakeGemini

TERMINAL = {"succeeded", "failed", "canceled"}


# ---- 15b. tokens can be revoked and replaced ----------------------------------------------

async def test_tokens_are_revoked_at_once_and_replaced(harness: Harness) -> None:
    h = harness
    _, admin = await make_user(h, "root", admin=True)
    created = await h.http.post("/api/admin/users", json={"name": "temp"},
                                headers=h.auth(admin))
    assert created.status_code == 201, created.text
    user_id, old = created.json()["id"], created.json()["token"]
    assert (await h.http.get("/api/me", headers=h.auth(old))).status_code == 200  # cached now
    path = f"/api/admin/users/{user_id}/tokens"
    # only admins, and only for users that exist
    assert (await h.http.delete(path, headers=h.auth(old))).status_code == 403
    assert (await h.http.post(path, headers=h.auth(old))).status_code == 403
    assert (await h.http.delete("/api/admin/users/usr_nobody/tokens",
                                headers=h.auth(admin))).status_code == 404
    revoked = await h.http.delete(path, headers=h.auth(admin))
    assert revoked.status_code == 200 and revoked.json()["revoked"] == 1
    refused = await h.http.get("/api/me", headers=h.auth(old))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert refused.headers["www-authenticate"] == "Bearer"
    fresh = await h.http.post(path, headers=h.auth(admin))
    assert fresh.status_code == 201
    new = fresh.json()["token"]
    assert new != old and fresh.json()["user_id"] == user_id
    me = await h.http.get("/api/me", headers=h.auth(new))
    assert me.status_code == 200 and me.json()["id"] == user_id
    assert (await h.http.get("/api/me", headers=h.auth(old))).status_code == 401
    # only hashes are stored
    stored = await h.svc.db.pool.fetch("SELECT token_hash FROM tokens WHERE user_id = $1",
                                       user_id)
    assert len(stored) == 2 and all(new not in r["token_hash"] for r in stored)


# ---- 12. a missing object is a 404; migrate creates the database ----------------------------

async def test_a_missing_stored_object_answers_404(harness: Harness) -> None:
    h = harness
    _, token = await make_user(h, "lost")
    await add_key(h, token, new_key("lost"))
    await h.start_worker()
    resp = await h.http.post("/api/jobs", json={"prompt": "misplaced"}, headers=h.auth(token))
    done = await h.wait_job(token, resp.json()["id"], TERMINAL)
    assert done["status"] == "succeeded", done
    (out,) = done["outputs"]
    assert (await h.http.get(out["url"], headers=h.auth(token))).status_code == 200
    row = await h.svc.db.pool.fetchrow("SELECT object_key, poster_key FROM outputs "
                                       "WHERE id = $1", out["id"])
    assert row is not None
    await h.svc.storage.delete(row["object_key"])  # the bucket lost it (lifecycle rule, hand)
    await h.svc.storage.delete(row["poster_key"])
    for url in (out["url"], out["poster_url"]):
        gone = await h.http.get(url, headers=h.auth(token))
        assert gone.status_code == 404, (url, gone.status_code, gone.text[:200])
        assert gone.json()["error"]["code"] == "not_found"
        assert gone.json()["error"]["message"]
    unknown = await h.http.get(f"/api/jobs/{done['id']}/outputs/out_{'0' * 24}",
                               headers=h.auth(token))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


async def veo_cli(*args: str, **env: str) -> tuple[int, str, str]:
    exe = str(Path(sys.executable).parent / "veo")
    proc = await asyncio.create_subprocess_exec(
        exe, *args, env={**os.environ, "VEO_SECRET_KEY": SECRET, "LOG_FORMAT": "json", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_migrate_creates_a_missing_database() -> None:
    name = f"veo_migrate_{uuid.uuid4().hex[:10]}"
    dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        code, out, err = await veo_cli("migrate", DATABASE_URL=dsn)
        assert code == 0, err
        assert re.search(r"applied [1-9]\d* migration\(s\): 0001_init", out), out
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 3
        finally:
            await conn.close()
        code, out, err = await veo_cli("migrate", DATABASE_URL=dsn)
        assert code == 0 and "the schema is up to date" in out, (out, err)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_migrate_without_the_right_to_create_says_what_to_do_in_one_line() -> None:
    role = f"veo_nocreate_{uuid.uuid4().hex[:8]}"
    name = f"veo_missing_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", f"postgresql://{role}@")
        code, _, err = await veo_cli("migrate", DATABASE_URL=f"{base}/{name}")
        lines = [line for line in err.splitlines() if line.strip()]
        assert code != 0
        assert len(lines) == 1, err  # one line, no traceback
        assert name in lines[0] and "createdb" in lines[0], lines[0]
        assert await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1",
                                    name) == 0
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


# ---- 7. full keys are never stored or shown --------------------------------------------------

async def _all_stored_text(h: Harness) -> str:
    """Every text column the service writes that could carry a Gemini error."""
    pool = h.svc.db.pool
    parts = [await pool.fetchval("SELECT string_agg(coalesce(last_error, '') || label, ' ') "
                                 "FROM api_keys"),
             await pool.fetchval("SELECT string_agg(coalesce(error::text, ''), ' ') FROM jobs"),
             await pool.fetchval("SELECT string_agg(coalesce(error::text, ''), ' ') FROM clips"),
             await pool.fetchval("SELECT string_agg(payload::text || coalesce(last_error, ''), "
                                 "' ') FROM outbox")]
    return " ".join(p or "" for p in parts)


async def test_keys_are_masked_and_google_texts_quoting_them_are_redacted(
        harness: Harness, fake_gemini: FakeGemini, capsys: pytest.CaptureFixture[str]) -> None:
    h = harness
    _, token = await make_user(h, "secretive")
    classic, newer, odd = new_key("blk"), new_aq_key(), "zz-" + uuid.uuid4().hex * 2
    listed = []
    for key in (classic, newer, odd):
        body = await add_key(h, token, key)
        assert body["masked"] == "…" + key[-4:] and key not in str(body)
        listed.append(body["id"])
    # the keys were fine when added; now Google suspends all but the odd one, quoting the key
    fake_gemini.key(classic, blocked=True)
    fake_gemini.key(newer, blocked=True)
    await h.start_worker()
    for i in range(3):  # keys rotate: by the third job each blocked key has been tried
        resp = await h.http.post("/api/jobs", json={"prompt": f"despite it all {i}"},
                                 headers=h.auth(token))
        done = await h.wait_job(token, resp.json()["id"], TERMINAL)
        assert done["status"] == "succeeded", done
    # each blocked key was refused once (its 403 quoting it) and never used again
    assert len(fake_gemini.creates(classic)) == 1 and len(fake_gemini.creates(newer)) == 1
    keys = {k["id"]: k for k in (await h.http.get("/api/keys", headers=h.auth(token)))
            .json()["data"]}
    text = str(keys)
    for key in (classic, newer, odd):
        assert key not in text
    for key_id in listed[:2]:
        assert keys[key_id]["status"] == "invalid"
        assert "suspended" in keys[key_id]["last_error"]
    assert keys[listed[2]]["status"] == "active"
    stored = await _all_stored_text(h)
    logged = capsys.readouterr().out
    for key in (classic, newer, odd):
        assert key not in stored and key not in logged


async def test_a_key_blocked_before_it_is_added_is_stored_invalid_and_redacted(
        harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await make_user(h, "preblocked")
    for key in (new_key("pre"), new_aq_key()):
        fake_gemini.key(key, blocked=True)
        body = await add_key(h, token, key)
        assert body["status"] == "invalid", body
        assert "suspended" in body["last_error"] and key not in body["last_error"]
        assert key not in await _all_stored_text(h)


async def test_a_job_failing_on_its_only_key_shows_no_key(harness: Harness,
                                                          fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await make_user(h, "onekey")
    key = new_aq_key()
    await add_key(h, token, key)
    fake_gemini.key(key, blocked=True)
    await h.start_worker()
    resp = await h.http.post("/api/jobs", json={"prompt": "nothing works"},
                             headers=h.auth(token))
    done = await h.wait_job(token, resp.json()["id"], TERMINAL)
    assert done["status"] == "failed" and done["error"]["code"] == "no_api_key", done
    assert key not in str(done) and key not in await _all_stored_text(h)


# ---- metrics -------------------------------------------------------------------------------

def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric == name and got == want:
            return float(value)
    return 0.0


PROBE_SQL = """
CREATE TABLE write_probe (tbl text, op text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION write_probe() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO write_probe (tbl, op) VALUES (TG_TABLE_NAME, TG_OP); RETURN NULL; END $$;
DO $$ DECLARE t text; BEGIN
  FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public'
           AND tablename <> 'write_probe' LOOP
    EXECUTE format('CREATE TRIGGER write_probe AFTER INSERT OR UPDATE OR DELETE ON %I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION write_probe()', t);
  END LOOP;
END $$;
"""


async def test_metrics_write_nothing_and_count_transitions(
        own_database: str, redis_url: str, redis: Any, tmp_path: Path,
        fake_gemini: FakeGemini) -> None:
    env = api_env(own_database, redis_url, tmp_path / "store", fake_gemini.url)
    async with running(env) as h:
        user, token = await make_user(h, "scraped")
        await add_key(h, token, new_key("scrape"))
        pool = h.svc.db.pool
        # a key whose cool-down ended: it reads as active without anyone writing that down
        await pool.execute(
            "INSERT INTO api_keys (id, user_id, fingerprint, key_enc, last4, status, "
            "cooling_until) VALUES ('key_thawed', $1, 'fp-thawed', 'x', 'abcd', 'cooling', "
            "now() - interval '1 minute')", user.id)
        await pool.execute(PROBE_SQL)
        try:
            for _ in range(3):
                resp = await h.http.get("/metrics")
                assert resp.status_code == 200
            assert await pool.fetch("SELECT tbl, op FROM write_probe") == []
        finally:
            await pool.execute("DROP TABLE write_probe CASCADE; "
                               "DROP FUNCTION write_probe() CASCADE")
        text = resp.text
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE veo_jobs_total counter" in text
        assert "# TYPE veo_job_run_seconds histogram" in text
        assert sample(text, "veo_api_keys", status="active") == 2
        # counters move at the transitions themselves
        before = text
        job = (await h.http.post("/api/jobs", json={"prompt": "counted"},
                                 headers=h.auth(token))).json()["id"]
        await h.http.post(f"/api/jobs/{job}/cancel", headers=h.auth(token))
        await h.start_worker()
        ok = (await h.http.post("/api/jobs", json={"prompt": "counted too"},
                                headers=h.auth(token))).json()["id"]
        assert (await h.wait_job(token, ok, TERMINAL))["status"] == "succeeded"
        after = (await h.http.get("/metrics")).text
        for status, delta in (("queued", 2), ("canceled", 1), ("running", 1),
                              ("succeeded", 1)):
            moved = sample(after, "veo_jobs_total", backend="api", status=status) - \
                sample(before, "veo_jobs_total", backend="api", status=status)
            assert moved == delta, (status, moved)
        assert sample(after, "veo_job_run_seconds_count", backend="api", status="succeeded") \
            >= sample(before, "veo_job_run_seconds_count", backend="api",
                      status="succeeded") + 1
