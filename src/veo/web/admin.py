"""Admin routes: users and their tokens, the Flow login state, re-queueing failed Flow jobs."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from veo import flow_state, jobs, logs, wire
from veo.errors import InvalidRequest, NotFound
from veo.services import Services, token_hash
from veo.web import auth, render
from veo.web.auth import current_admin, current_user, new_token
from veo.web.jobs import decode_body
from veo.web.uploads import read_bounded

log = logs.get_logger("veo.web.admin")
_ACCOUNT = re.compile(wire.ACCOUNT)


def _svc(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _account(request: Request, default: str | None = None) -> str | None:
    """``?account=``: ASCII letters, digits, '-' and '_' (it names an object key)."""
    account = request.query_params.get("account", default)
    if account is not None and not _ACCOUNT.fullmatch(account):
        raise InvalidRequest("account: 1 to 64 ASCII letters, digits, '-' and '_'",
                             details={"field": "account"})
    return account


def _flow_account(request: Request) -> str:
    account = _account(request, _svc(request).settings.flow_account)
    assert account is not None
    return account


async def create_user(request: Request) -> Response:
    await current_admin(request)
    svc = _svc(request)
    data: wire.UserIn = decode_body(await read_bounded(request, 16 * 1024), wire.UserIn)
    token = new_token()
    row = await svc.db.create_user(data.name.strip(), data.is_admin, token_hash(token))
    log.info("user.created", user_id=row.id, is_admin=row.is_admin)
    return render.JSON(wire.UserOut(id=row.id, name=row.name, is_admin=row.is_admin,
                                    token=token), status_code=201)


async def _user(request: Request) -> str:
    await current_admin(request)
    user_id = str(request.path_params["user_id"])
    if await _svc(request).db.user_by_id(user_id) is None:
        raise NotFound(f"no user {user_id!r}")
    return user_id


async def revoke_tokens(request: Request) -> Response:
    user_id = await _user(request)
    hashes = await _svc(request).db.revoke_tokens(user_id)
    auth.forget(hashes)
    log.info("user.tokens_revoked", user_id=user_id, tokens=len(hashes))
    return render.JSON(wire.Revoked(user_id=user_id, revoked=len(hashes)))


async def create_token(request: Request) -> Response:
    user_id = await _user(request)
    token = new_token()
    await _svc(request).db.add_token(user_id, token_hash(token))
    log.info("user.token_created", user_id=user_id)
    return render.JSON(wire.TokenOut(user_id=user_id, token=token), status_code=201)


async def me(request: Request) -> Response:
    user = await current_user(request)
    svc = _svc(request)
    usable, _, _ = await svc.db.key_stats(user.id)
    model = svc.catalog.get(svc.settings.default_model)
    auto = None
    if model is not None:
        try:
            auto = jobs.choose_backend("auto", model, has_usable_key=usable > 0,
                                       flow_enabled=svc.settings.flow_enabled)
        except InvalidRequest:
            auto = None
    return render.JSON(wire.Me(id=user.id, name=user.name, is_admin=user.is_admin,
                               webhook_secret=svc.box.webhook_secret(user.id),
                               usable_keys=usable, auto_backend=auto))


def _state_key(svc: Services, account: str) -> str:
    return (svc.settings.flow_storage_state_key if account == svc.settings.flow_account
            else flow_state.state_key(account))


async def upload_flow_auth(request: Request) -> Response:
    await current_admin(request)
    svc = _svc(request)
    account = _flow_account(request)
    raw = await read_bounded(request, flow_state.MAX_STATE_BYTES)
    decode_body(raw, wire.StorageState)  # the shape the document states, each field named
    state = flow_state.parse(raw)
    await flow_state.write(svc.storage, svc.box, account, state, _state_key(svc, account))
    log.info("flow.auth_uploaded", account=account, cookies=len(state["cookies"]))
    return render.JSON(await _auth_status(svc, account), status_code=201)


async def get_flow_auth(request: Request) -> Response:
    await current_admin(request)
    svc = _svc(request)
    return render.JSON(await _auth_status(svc, _flow_account(request)))


async def _auth_status(svc: Services, account: str) -> wire.FlowAuthStatus:
    key = _state_key(svc, account)
    head = await svc.storage.head(key)
    cookies = 0
    if head is not None:
        try:
            loaded = await flow_state.read(svc.storage, svc.box, account, key)
            cookies = len(loaded.state["cookies"]) if loaded else 0
        except Exception:
            cookies = 0
    row = await svc.db.flow_account(account)
    return wire.FlowAuthStatus(
        configured=head is not None, account=account,
        last_verified_at=row.last_verified_at if row else None,
        needs_auth=await svc.lifecycle.flow_paused(account),
        needs_auth_since=row.needs_auth_since if row else None,
        state_updated_at=row.state_updated_at if row else None, cookies=cookies)


async def retry_failed_flow(request: Request) -> Response:
    await current_admin(request)
    svc = _svc(request)
    n = await svc.lifecycle.retry_failed_flow(_account(request))
    return render.JSON(wire.RetryFailed(requeued=n))
