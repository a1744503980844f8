"""``/api/keys``: the caller's Gemini keys, stored encrypted and shown masked."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from veo import wire
from veo.errors import Conflict, InvalidRequest, NotFound
from veo.keypool import KeyPool
from veo.services import Services
from veo.web import render
from veo.web.auth import current_user
from veo.web.jobs import decode_body
from veo.web.uploads import read_bounded


async def create(request: Request) -> Response:
    user = await current_user(request)
    svc: Services = request.app.state.services
    body = await read_bounded(request, 16 * 1024)
    data: wire.KeyIn = decode_body(body, wire.KeyIn)
    pool = KeyPool(svc.db, svc.box, svc.settings)
    try:
        row = await pool.add(user.id, data.key, data.label, request.app.state.validate_key)
    except InvalidRequest as exc:
        if exc.code != "duplicate_key":
            raise
        # a well-formed key that is already stored conflicts with what exists: 409, not 422
        raise Conflict(exc.message, code=exc.code, details=exc.details) from None
    return render.JSON(render.key(row), status_code=201)


async def list_keys(request: Request) -> Response:
    user = await current_user(request)
    svc: Services = request.app.state.services
    rows = await svc.db.list_keys(user.id)
    return render.JSON(wire.KeyList(data=[render.key(r) for r in rows]))


async def delete(request: Request) -> Response:
    user = await current_user(request)
    svc: Services = request.app.state.services
    if not await svc.db.delete_key(request.path_params["key_id"], user.id):
        raise NotFound(f"no key {request.path_params['key_id']!r}")
    return Response(status_code=204)
