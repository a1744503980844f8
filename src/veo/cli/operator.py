"""Operator commands of ``veo``: they run beside the service's database and storage
(migrate, serve, users, flow, models, rotate-secret)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from veo import config, logs
from veo.errors import ConfigError, VeoError

COMMANDS = ("migrate", "serve", "users", "flow", "models", "rotate-secret")
CANARY_WAIT = 120.0  # seconds `veo flow canary` waits for the driving worker's answer


def _settings(require_secret: bool = True) -> config.Settings:
    try:
        return config.load(require_secret=require_secret)
    except ConfigError as exc:
        print(f"veo: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(coro: Awaitable[int]) -> int:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except VeoError as exc:
        print(f"veo: {exc.message}", file=sys.stderr)
        return 1


async def _migrate(settings: config.Settings) -> int:
    from veo import db
    from veo.services import connect_database

    pool = await connect_database(settings, pool_size=2)
    try:
        applied = await db.migrate(pool)
    finally:
        await pool.close()
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else
                                                     "; the schema is up to date"))
    return 0


async def _users_create(settings: config.Settings, name: str, admin: bool) -> int:
    from veo.services import opened, token_hash
    from veo.web.auth import new_token

    token = new_token()
    async with opened(settings) as svc:
        row = await svc.db.create_user(name, admin, token_hash(token))
    print(f"created user {row.name} ({row.id}){' as admin' if admin else ''}")
    print(f"token (shown once): {token}")
    return 0


async def _flow_status(settings: config.Settings) -> int:
    from veo import names
    from veo.services import opened

    account = settings.flow_account
    async with opened(settings) as svc:
        q = await svc.db.queue_status(account)
        paused = await svc.lifecycle.flow_paused(account)
        head = await svc.storage.head(settings.flow_storage_state_key)
        acct = await svc.db.flow_account(account)
        driver = await svc.redis.get(names.flow_lease(account))
    canary = acct.canary if acct else None
    print(f"account:          {account}")
    print(f"login state:      {'configured' if head else 'missing'} "
          f"({settings.flow_storage_state_key})")
    print(f"last verified:    {(acct.last_verified_at if acct else None) or 'never'}")
    print(f"paused:           {'yes (needs a new login)' if paused else 'no'}")
    print(f"cooling until:    {(acct.cooling_until if acct else None) or '-'}")
    print(f"driven by:        {driver.decode() if driver else 'no worker'}")
    print("canary:           " + ("never ran" if not canary else
                                   f"{'ok' if canary.get('ok') else 'FAILED'} at {canary.get('at')}"
                                   + (f" (step {canary['step']})" if canary.get("step") else "")))
    print(f"pending:          {q.pending}")
    print(f"processing:       {q.processing}")
    print(f"failed:           {q.failed}")
    print(f"waiting_auth:     {q.waiting_auth}")
    return 0


async def _flow_retry_failed(settings: config.Settings) -> int:
    from veo.services import opened

    async with opened(settings) as svc:
        n = await svc.lifecycle.retry_failed_flow(settings.flow_account)
    print(f"re-queued {n} failed Flow job(s)")
    return 0


def _serve(settings: config.Settings, host: str, port: int) -> int:
    import uvicorn

    from veo.web.app import create_app

    logs.configure(settings.log_format)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None,
                proxy_headers=True, forwarded_allow_ips="*", timeout_graceful_shutdown=10)
    return 0


async def _users_revoke(settings: config.Settings, name: str, fresh: bool) -> int:
    from veo.services import opened, token_hash
    from veo.web.auth import new_token

    async with opened(settings) as svc:
        row = await svc.db.user_by_name(name)
        if row is None:
            print(f"veo: no user named {name!r}", file=sys.stderr)
            return 1
        revoked = await svc.db.revoke_tokens(row.id)
        print(f"revoked {len(revoked)} token(s) of {row.name} ({row.id})")
        if fresh:
            token = new_token()
            await svc.db.add_token(row.id, token_hash(token))
            print(f"new token (shown once): {token}")
    return 0


def _models(settings: config.Settings, as_json: bool) -> int:
    import msgspec

    from veo import catalog as catalogmod
    from veo.web.render import model

    today = datetime.now(UTC).date()
    models = sorted(catalogmod.load(settings.models_file), key=lambda m: (m.retired(today), m.id))
    rows = [model(m, settings.default_model, today) for m in models]
    if as_json:
        print(msgspec.json.encode(rows).decode())
        return 0
    print(f"{'model':32} {'backends':10} {'resolutions':22} {'seconds':9} status")
    for m, row in zip(models, rows, strict=True):
        caps = row.capabilities.get("api") or next(iter(row.capabilities.values()), None)
        res = ",".join(caps.resolutions) if caps else "-"
        secs = f"{min(caps.durations)}-{max(caps.durations)}" if caps and caps.durations else "-"
        if m.retired(today):
            status = f"retired {m.shutdown}" + (f", use {m.replacement}" if m.replacement else "")
        else:
            status = "default" if row.default else (f"shuts down {m.shutdown}" if m.shutdown
                                                    else "served")
        print(f"{m.id:32} {','.join(m.backends):10} {res:22} {secs:9} {status}")
    return 0


async def _flow_canary(settings: config.Settings) -> int:
    """Ask the worker that drives the account to walk the UI now; with none driving it, take
    the lease and walk it from here. Spends no credits either way."""
    from veo import names
    from veo.services import opened
    from veo.worker.lease import Lease

    account = settings.flow_account
    async with opened(settings) as svc:
        before = await svc.db.flow_account(account)
        stamp = before.canary.get("at") if before and before.canary else None
        lease = Lease(svc.redis, names.flow_lease(account), "veo-flow-canary",
                      settings.flow_lease_seconds)
        if await lease.acquire():
            from veo.worker.flow import FlowBackend

            backend = FlowBackend(svc, settings)
            try:
                await backend.canary()
            finally:
                await backend.close()
                await lease.release()
        else:
            print(f"asking the worker driving {account!r} ({await lease.holder()})…")
            await svc.redis.set(names.flow_canary_request(account), "1", ex=int(CANARY_WAIT))
            for _ in range(int(CANARY_WAIT / 0.5)):
                now = await svc.db.flow_account(account)
                if now and now.canary and now.canary.get("at") != stamp:
                    break
                await asyncio.sleep(0.5)
            else:
                print("veo: the driving worker did not answer in time", file=sys.stderr)
                return 1
        report = (await svc.db.flow_account(account))
    canary: dict[str, Any] = dict(report.canary or {}) if report else {}
    print(f"canary:        {'ok' if canary.get('ok') else 'FAILED'} at {canary.get('at')}")
    if canary.get("step"):
        print(f"failed at:     {canary['step']}: {canary.get('message')}")
    if canary.get("fallback_used"):
        print(f"fallbacks:     {', '.join(canary['fallback_used'])} (first-choice selectors "
              "did not match: update browser/selectors.py)")
    for kind, key in (canary.get("debug") or {}).items():
        print(f"debug {kind}:  {key}")
    return 0 if canary.get("ok") else 1


def add_parsers(sub: Any) -> None:
    sub.add_parser("migrate", help="apply database migrations (creates the database if missing)")
    serve = sub.add_parser("serve", help="run the web app")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    users = sub.add_parser("users", help="manage users").add_subparsers(dest="ucmd", required=True)
    create = users.add_parser("create", help="create a user and print its token once")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true")
    revoke = users.add_parser("revoke", help="revoke every token of a user")
    revoke.add_argument("name")
    revoke.add_argument("--new-token", action="store_true", help="and print a fresh one")
    flow = sub.add_parser("flow", help="Flow backend").add_subparsers(dest="fcmd", required=True)
    flow.add_parser("status", help="queue counts, login state, driver, canary")
    flow.add_parser("retry-failed", help="re-queue every failed Flow job")
    flow.add_parser("canary", help="walk the Flow UI up to (never including) submit now")
    models = sub.add_parser("models", help="the model catalog")
    models.add_argument("--json", action="store_true")
    sub.add_parser("rotate-secret", help="re-encrypt stored secrets with a new VEO_SECRET_KEY "
                   "(old one in VEO_OLD_SECRET_KEY)")


def run(args: argparse.Namespace) -> int:
    if args.cmd == "models":
        try:
            return _models(_settings(require_secret=False), args.json)
        except ConfigError as exc:
            print(f"veo: {exc.message}", file=sys.stderr)
            return 2
    settings = _settings()
    logs.configure("console" if sys.stdout.isatty() else settings.log_format)
    flows: dict[str, Callable[[], Awaitable[int]]] = {
        "status": lambda: _flow_status(settings),
        "retry-failed": lambda: _flow_retry_failed(settings),
        "canary": lambda: _flow_canary(settings),
    }
    handlers: dict[str, Callable[[], Any]] = {
        "migrate": lambda: _run(_migrate(settings)),
        "serve": lambda: _serve(settings, args.host or settings.host, args.port or settings.port),
        "users": lambda: _run(_users_create(settings, args.name, args.admin)
                              if args.ucmd == "create"
                              else _users_revoke(settings, args.name, args.new_token)),
        "flow": lambda: _run(flows[args.fcmd]()),
        "rotate-secret": lambda: _run(_rotate(settings)),
    }
    return int(handlers[args.cmd]())


async def _rotate(settings: config.Settings) -> int:
    from veo.cli.rotate import rotate_secret

    return await rotate_secret(settings)
