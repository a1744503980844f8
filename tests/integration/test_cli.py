"""The command line, as an operator runs it: real PostgreSQL, Redis, an S3 server (moto) and,
for the Flow login, real Chromium against the fake Flow site."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from tests.harness import CHROMIUM, SECRET
from veo import config, flow_state
from veo.crypto import Box
from veo.gemini import KeyCheck
from veo.jobs import ClipSpec
from veo.keypool import PURPOSE, KeyPool
from veo.records import Params
from veo.sandbox.flow import FakeFlow
from veo.services import build_services

BIN = Path(sys.executable).parent


async def run(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / args[0]), *args[1:], env={"PATH": os.environ["PATH"], **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
def cli_env(pg_dsn: str, redis_url: str, s3_server: str, s3_bucket: str) -> dict[str, str]:
    return {"DATABASE_URL": pg_dsn, "REDIS_URL": redis_url, "VEO_SECRET_KEY": SECRET,
            "S3_ENDPOINT": s3_server, "S3_BUCKET": s3_bucket, "S3_ACCESS_KEY": "test",
            "S3_SECRET_KEY": "test", "S3_REGION": "us-east-1", "LOG_FORMAT": "json",
            "FLOW_ACCOUNT": "cli", "FLOW_BROWSER_EXECUTABLE": CHROMIUM}


async def test_migrate_and_users(cli_env: dict[str, str]) -> None:
    code, out = await run(["veo", "migrate"], cli_env)
    assert code == 0 and ("up to date" in out or "applied" in out), out
    code, out = await run(["veo", "migrate"], cli_env)
    assert code == 0 and "up to date" in out
    code, out = await run(["veo", "users", "create", "ops-person", "--admin"], cli_env)
    assert code == 0, out
    token = out.split("token (shown once): ")[1].split()[0]
    assert token.startswith("veo_") and "as admin" in out
    settings = config.load(cli_env)
    svc = await build_services(settings)
    try:
        from veo.services import token_hash

        user = await svc.db.user_by_token_hash(token_hash(token))
        assert user is not None and user.is_admin and user.name == "ops-person"
    finally:
        await svc.close()
    # revoking: the old token stops working at once; --new-token prints a working one
    code, out = await run(["veo", "users", "revoke", "ops-person", "--new-token"], cli_env)
    assert code == 0 and "revoked 1 token(s)" in out, out
    fresh = out.split("new token (shown once): ")[1].split()[0]
    svc = await build_services(settings)
    try:
        assert await svc.db.user_by_token_hash(token_hash(token)) is None
        assert await svc.db.user_by_token_hash(token_hash(fresh)) is not None
    finally:
        await svc.close()
    code, out = await run(["veo", "users", "revoke", "nobody-by-that-name"], cli_env)
    assert code == 1 and "no user named" in out


async def test_models_lists_the_catalog_and_honours_the_models_file(tmp_path: Path) -> None:
    env = {"VEO_MODELS_FILE": str(tmp_path / "models.toml")}
    (tmp_path / "models.toml").write_text(
        '[models."gemini-omni-1.1-flash"]\nshutdown = 2026-11-30\n'
        'replacement = "gemini-omni-1.2-flash"\n'
        '[models."omni-next"]\nprotocol = "interactions"\nbackends = ["api"]\n'
        'resolutions = ["720p"]\ndurations = [5]\ndefault_duration = 5\n')
    code, out = await run(["veo", "models"], {})  # no secret, no database needed
    assert code == 0 and "gemini-omni-1.1-flash" in out and "default" in out
    assert "veo-3.1-fast-generate-preview" in out and "retired 2026-10-22" in out
    code, out = await run(["veo", "models", "--json"], env)
    assert code == 0, out
    models = {m["id"]: m for m in json.loads(out)}
    # an entry added and a shutdown moved without a release
    assert models["omni-next"]["capabilities"]["api"]["durations"] == [5]
    assert models["gemini-omni-1.1-flash"]["retired"] is True
    assert models["gemini-omni-1.1-flash"]["replacement"] == "gemini-omni-1.2-flash"
    (tmp_path / "models.toml").write_text("[models.broken]\nbackends = 3\n")
    code, out = await run(["veo", "models"], env)
    assert code == 2 and "broken" in out


async def test_missing_secret_exits_naming_it(cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "VEO_SECRET_KEY"}
    code, out = await run(["veo", "migrate"], env)
    assert code == 2 and "VEO_SECRET_KEY" in out
    code, out = await run(["arq", "veo.worker.Settings"], env, timeout=60)
    assert code != 0 and "VEO_SECRET_KEY" in out
    code, out = await run(["veo-auth", "check"], {**cli_env, "FLOW_MAX_CONCURRENT": "zero"})
    assert code == 2 and "FLOW_MAX_CONCURRENT" in out


async def test_veo_auth_export_upload_check(cli_env: dict[str, str], fake_flow: FakeFlow,
                                            tmp_path: Path) -> None:
    env = {**cli_env, "FLOW_BASE_URL": fake_flow.home}
    fake_flow.auto_login = True  # the sign-in page completes itself, as a person would
    out_path = tmp_path / "state.json"
    code, out = await run(["veo-auth", "export", "--headless", "--upload", "--wait", "60",
                           "--output", str(out_path)], env)
    assert code == 0, out
    assert stat.S_IMODE(out_path.stat().st_mode) == 0o600
    state = json.loads(out_path.read_text())
    assert any(c["name"] == "SID" for c in state["cookies"])
    assert "uploaded it encrypted to flow/auth/cli/storage_state.json" in out
    fake_flow.auto_login = False  # nobody signs in for the checks below
    code, out = await run(["veo-auth", "check"], env)
    assert code == 0 and "logged in" in out and "NOT" not in out, out
    fake_flow.expire_all()
    code, out = await run(["veo-auth", "check"], env)
    assert code == 1 and "NOT logged in" in out
    # upload a fresh state from a file
    fresh = tmp_path / "fresh.json"
    fresh.write_text(json.dumps(fake_flow.storage_state()))
    code, out = await run(["veo-auth", "upload", str(fresh)], env)
    assert code == 0 and "uploaded 1 cookies encrypted" in out
    code, out = await run(["veo-auth", "check"], env)
    assert code == 0, out
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a state"}')
    code, out = await run(["veo-auth", "upload", str(bad)], env)
    assert code == 1 and "storage state" in out
    for secret in state["cookies"]:
        assert secret["value"] not in out


async def test_flow_status_and_retry_failed(cli_env: dict[str, str]) -> None:
    settings = config.load(cli_env)
    svc = await build_services(settings)
    try:
        user = await svc.db.create_user("flowcli", False, "hash-flowcli")
        job = await svc.db.create_job(
            user_id=user.id, backend="flow", requested_backend="flow",
            model="veo-3.1-fast", params=Params(), webhook_url=None,
            idempotency_key=None, request_hash=None, flow_account="cli", continuity="none",
            final_options=None, clips=[ClipSpec(prompt="p")])
        await svc.db.pool.execute(
            "UPDATE jobs SET status = 'failed', error = '{\"code\": \"policy\"}' WHERE id = $1",
            job.id)
        code, out = await run(["veo", "flow", "status"], cli_env)
        assert code == 0, out
        assert "account:          cli" in out and "failed:" in out
        failed_before = int(out.split("failed:")[1].split()[0])
        assert failed_before >= 1
        code, out = await run(["veo", "flow", "retry-failed"], cli_env)
        assert code == 0 and "re-queued" in out
        row = await svc.db.get_job(job.id)
        assert row is not None and row.status == "queued" and row.run_seq == 1
        arq_key = f"arq:job:veo:{job.id}:1"
        assert await svc.redis.exists(arq_key)
    finally:
        await svc.close()


async def test_rotate_secret_end_to_end(cli_env: dict[str, str], own_database: str,
                                        fake_flow: FakeFlow) -> None:
    # rotation counts every stored key: a database of its own keeps other tests' keys out
    cli_env = {**cli_env, "DATABASE_URL": own_database}
    old_settings = config.load(cli_env)
    svc = await build_services(old_settings)
    new_secret = "a-brand-new-secret-that-is-long-enough-42!"
    try:
        user = await svc.db.create_user("rotator", False, "hash-rotator")

        async def fine(_key: str) -> KeyCheck:
            return KeyCheck("ok")

        pool = KeyPool(svc.db, svc.box, old_settings)
        keys = [f"AIza-rotate-{i}-0123456789abcdef" for i in range(4)]
        rows = [await pool.add(user.id, k, None, fine) for k in keys]
        await flow_state.write(svc.storage, svc.box, "cli", fake_flow.storage_state(),
                               "flow/auth/cli/storage_state.json")
        # an interrupted earlier run: half the keys already carry the new secret
        new_box = Box(new_secret)
        for row, key in list(zip(rows, keys, strict=True))[:2]:
            await svc.db.update_key_enc(row.id, new_box.encrypt(key.encode(), PURPOSE),
                                        row.key_enc)
    finally:
        await svc.close()
    env = {**cli_env, "VEO_SECRET_KEY": new_secret, "VEO_OLD_SECRET_KEY": SECRET}
    code, out = await run(["veo", "rotate-secret"], env)
    assert code == 0, out
    assert "keys_rotated=2" in out and "keys_current=2" in out and "states_rotated=1" in out
    code, out = await run(["veo", "rotate-secret"], env)
    assert code == 0 and "keys_rotated=0" in out and "states_current=1" in out
    # with the new secret alone, every key and the state are readable
    new_settings = config.load({**cli_env, "VEO_SECRET_KEY": new_secret})
    svc = await build_services(new_settings)
    try:
        pool = KeyPool(svc.db, svc.box, new_settings)
        got = set()
        for _ in keys:
            lease = await pool.acquire(user.id, frozenset(got))
            got.add(lease.key_id)
            assert lease.secret in keys
        loaded = await flow_state.read(svc.storage, svc.box, "cli",
                                       "flow/auth/cli/storage_state.json")
        assert loaded is not None and loaded.state["cookies"][0]["name"] == "SID"
    finally:
        await svc.close()
    code, out = await run(["veo", "rotate-secret"], {**cli_env, "VEO_SECRET_KEY": new_secret})
    assert code == 1 and "VEO_OLD_SECRET_KEY" in out


async def test_serve_answers_health(cli_env: dict[str, str]) -> None:
    import httpx

    from tests.harness import free_port

    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "veo"), "serve", "--host", "127.0.0.1", "--port", str(port),
        env={"PATH": os.environ["PATH"], **cli_env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    resp = await client.get(f"http://127.0.0.1:{port}/api/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("veo serve did not answer")
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "ok"
        assert body["checks"] == {"db": "ok", "redis": "ok", "storage": "ok"}
        assert set(body["backends"]["flow"]) >= {"enabled", "auth_configured",
                                                 "queue_configured", "needs_auth"}
    finally:
        proc.terminate()
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why
    assert proc.returncode in (0, -15)
    assert b'"event": "web.started"' in out and b"Application shutdown complete" in out
    assert SECRET.encode() not in out


async def test_sandbox_web_and_worker_processes(own_database: str, redis_url: str,
                                                tmp_path: Path) -> None:
    """``VEO_SANDBOX=1`` with the Procfile's two processes: offline, no other set-up."""
    import httpx

    pg_dsn = own_database

    from tests.harness import free_port

    port = free_port()
    while True:  # the fakes take PORT+1 and PORT+2
        try:
            import socket

            for p in (port + 1, port + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            break
        except OSError:
            port = free_port()
    env = {"VEO_SANDBOX": "1", "DATABASE_URL": pg_dsn, "REDIS_URL": redis_url,
           "STORAGE_DIR": str(tmp_path / "sandbox"), "PORT": str(port),
           "FLOW_BROWSER_EXECUTABLE": CHROMIUM, "FLOW_ACCOUNT": "sandboxed",
           "VEO_POLL_SECONDS": "0.3", "FLOW_STATE_POLL_SECONDS": "0.5"}
    full = {"PATH": os.environ["PATH"], **env}
    code, out = await run(["veo", "users", "create", "sandy"], env)
    assert code == 0, out
    token = out.split("token (shown once): ")[1].split()[0]
    web = await asyncio.create_subprocess_exec(str(BIN / "veo"), "serve", env=full,
                                               stdout=asyncio.subprocess.DEVNULL,
                                               stderr=asyncio.subprocess.DEVNULL)
    worker = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            for _ in range(100):
                try:
                    await client.get("/api/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            worker = await asyncio.create_subprocess_exec(
                str(BIN / "arq"), "veo.worker.Settings", env=full,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            ids = []
            for backend in ("auto", "flow"):
                resp = await client.post("/api/jobs", json={"prompt": f"sandbox {backend}",
                                                            "backend": backend})
                assert resp.status_code == 201, resp.text
                ids.append(resp.json()["id"])
            assert [(await client.get(f"/api/jobs/{i}")).json()["backend"] for i in ids] == \
                ["api", "flow"]
            for _ in range(300):
                bodies = [(await client.get(f"/api/jobs/{i}")).json() for i in ids]
                if all(b["status"] in ("succeeded", "failed") for b in bodies):
                    break
                await asyncio.sleep(0.2)
            assert [b["status"] for b in bodies] == ["succeeded", "succeeded"], bodies
    finally:
        for proc in (worker, web):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 30)
