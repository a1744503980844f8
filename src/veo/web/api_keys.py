"""``/api/keys``: the caller's Gemini keys, stored encrypted and shown masked."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from veo import wire
from veo.errors import BadRequest, InvalidRequest, NotFound
from veo.keypool import KeyPool
from veo.services import Services
from veo.web import render
from veo.web.auth import current_user
from veo.web.uploads import read_bounded

_key_in = msgspec.json.Decoder(wire.KeyIn)


async def create(request: Request) -> Response:
    user = await current_user(request)
    svc: Services = request.app.state.services
    body = await read_bounded(request, 16 * 1024)
    try:
        data = _key_in.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc), details={"field": "key"}) from None
    except msgspec.DecodeError:
        raise BadRequest("body is not valid JSON") from None
    pool = KeyPool(svc.db, svc.box, svc.settings)
    row = await pool.add(user.id, data.key, data.label, request.app.state.validate_key)
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
