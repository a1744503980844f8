"""The ``veo`` command. Operator commands (migrate, serve, users, flow, demo, rotate-secret) run
beside the service's database; user commands (generate, jobs, batch, in ``veo.cli.user``) talk
to a running service over HTTP and need neither a database nor ``VEO_SECRET_KEY``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from veo import config, logs
from veo.cli import user
from veo.errors import ConfigError, VeoError


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="veo", description="Veo video service")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("migrate", help="apply database migrations")
    serve = sub.add_parser("serve", help="run the web app")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    users = sub.add_parser("users", help="manage users").add_subparsers(dest="ucmd", required=True)
    create = users.add_parser("create", help="create a user and print its token once")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true")
    flow = sub.add_parser("flow", help="Flow backend").add_subparsers(dest="fcmd", required=True)
    flow.add_parser("status", help="queue counts and login state")
    flow.add_parser("retry-failed", help="re-queue every failed Flow job")
    demo = sub.add_parser("demo", help="run the offline sandbox demo")
    demo.add_argument("--once", action="store_true", help="exit when both jobs finished")
    demo.add_argument("--port", type=int, default=None)
    sub.add_parser("rotate-secret", help="re-encrypt stored secrets with a new VEO_SECRET_KEY "
                   "(old one in VEO_OLD_SECRET_KEY)")
    user.add_parsers(sub)
    args = parser.parse_args(argv)

    if args.cmd in user.COMMANDS:
        return user.run(args)
    if args.cmd == "demo":
        from veo.sandbox.demo import run_demo

        return run_demo(once=args.once, port=args.port)
    settings = _settings()
    logs.configure("console" if sys.stdout.isatty() else settings.log_format)
    handlers: dict[str, Callable[[], Any]] = {
        "migrate": lambda: _run(_migrate(settings)),
        "serve": lambda: _serve(settings, args.host or settings.host, args.port or settings.port),
        "users": lambda: _run(_users_create(settings, args.name, args.admin)),
        "flow": lambda: _run(_flow_status(settings) if args.fcmd == "status"
                             else _flow_retry_failed(settings)),
        "rotate-secret": lambda: _run(_rotate(settings)),
    }
    return int(handlers[args.cmd]())


async def _rotate(settings: config.Settings) -> int:
    from veo.cli.rotate import rotate_secret

    return await rotate_secret(settings)


if __name__ == "__main__":
    raise SystemExit(main())
