"""``veo-auth``: capture, upload and check the Flow login (a Playwright storage state).

    veo-auth export [--upload] [--output PATH]   headed browser; waits for you to sign in
    veo-auth upload PATH                         encrypt and store a saved state
    veo-auth check                               load Flow with the stored state
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from veo import config, flow_state, logs
from veo.errors import ConfigError, VeoError

LOGIN_WAIT = 900.0  # seconds `export` waits for a person to finish signing in


def _settings() -> config.Settings:
    try:
        return config.load()
    except ConfigError as exc:
        print(f"veo-auth: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


async def _store(settings: config.Settings, state: dict[str, Any]) -> str:
    from veo.services import opened

    async with opened(settings) as svc:
        await flow_state.write(svc.storage, svc.box, settings.flow_account, state,
                               settings.flow_storage_state_key)
    return settings.flow_storage_state_key


def _write_private(path: Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)


async def export(settings: config.Settings, output: Path, upload: bool, headless: bool,
                 wait: float) -> int:
    from veo.browser.context import BrowserSession
    from veo.browser.flow import LoginState, check_login, is_login_page

    session = BrowserSession(executable=settings.flow_browser_executable, headless=headless,
                             recycle_jobs=1_000_000)
    await session.load({"cookies": [], "origins": []})
    try:
        async with session.page() as page:
            await page.goto(settings.flow_base_url, wait_until="domcontentloaded")
            print(f"Sign in to Google in the browser window (waiting up to {wait:.0f} s)…")
            deadline = time.monotonic() + wait
            while True:
                await asyncio.sleep(1.0)
                on_flow = page.url.startswith(settings.flow_base_url.split("?")[0])
                if on_flow and not await is_login_page(page):
                    # looks signed in: confirm with the worker's own login test, since a dead
                    # session also shows Flow's page for a moment before it hops to /about
                    async with session.page() as probe:
                        if await check_login(probe, settings.flow_base_url) is \
                                LoginState.SIGNED_IN:
                            break
                if time.monotonic() > deadline:
                    print("veo-auth: timed out waiting for the sign-in", file=sys.stderr)
                    return 1
            state = await session.storage_state()
    finally:
        await session.close()
    assert state is not None
    await asyncio.to_thread(_write_private, output, json.dumps(state, indent=1))
    print(f"saved the login ({len(state['cookies'])} cookies) to {output} (mode 600; keep it "
          "out of git)")
    if upload:
        key = await _store(settings, state)
        print(f"uploaded it encrypted to {key}")
    return 0


async def upload(settings: config.Settings, path: Path) -> int:
    raw = await asyncio.to_thread(path.read_bytes)
    state = flow_state.parse(raw)
    key = await _store(settings, state)
    print(f"uploaded {len(state['cookies'])} cookies encrypted to {key}; workers pick it up "
          "within FLOW_STATE_POLL_SECONDS")
    return 0


async def check(settings: config.Settings) -> int:
    from veo.browser.context import BrowserSession
    from veo.browser.flow import LoginState, check_login
    from veo.services import opened

    async with opened(settings) as svc:
        loaded = await flow_state.read(svc.storage, svc.box, settings.flow_account,
                                       settings.flow_storage_state_key)
        if loaded is None:
            print(f"no login state at {settings.flow_storage_state_key}: run "
                  "`veo-auth export --upload`")
            return 1
        # the worker's browser mode and login test: Google refuses headless browsers
        session = BrowserSession(executable=settings.flow_browser_executable,
                                 headless=settings.flow_headless, recycle_jobs=1_000_000)
        await session.load(loaded.state)
        try:
            async with session.page() as page:
                state = await check_login(page, settings.flow_base_url)
        finally:
            await session.close()
        ok = state is LoginState.SIGNED_IN
        if ok:
            await svc.db.flow_verified(settings.flow_account)
    print(f"account {settings.flow_account}: {'logged in' if ok else f'NOT logged in ({state})'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="veo-auth", description="Flow login management")
    sub = parser.add_subparsers(dest="cmd", required=True)
    exp = sub.add_parser("export", help="sign in with a browser and save the login")
    exp.add_argument("--upload", action="store_true", help="also store it encrypted")
    exp.add_argument("--output", type=Path, default=Path("storage_state.json"))
    exp.add_argument("--headless", action="store_true",
                     help="no window (only useful where sign-in completes by itself)")
    exp.add_argument("--wait", type=float, default=LOGIN_WAIT)
    up = sub.add_parser("upload", help="encrypt and store a saved login")
    up.add_argument("path", type=Path)
    sub.add_parser("check", help="load Flow with the stored login and report")
    args = parser.parse_args(argv)
    settings = _settings()
    logs.configure("console" if sys.stdout.isatty() else settings.log_format)
    try:
        if args.cmd == "export":
            return asyncio.run(export(settings, args.output, args.upload, args.headless,
                                      args.wait))
        if args.cmd == "upload":
            return asyncio.run(upload(settings, args.path))
        return asyncio.run(check(settings))
    except VeoError as exc:
        print(f"veo-auth: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
