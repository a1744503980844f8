"""``POST /api/uploads``: a bounded multipart read, content sniffing, then storage."""

from __future__ import annotations

import asyncio
import io

from python_multipart import parse_form
from starlette.requests import Request
from starlette.responses import Response

from veo import db as dbmod
from veo import images, logs, names, wire
from veo.errors import BadRequest, PayloadTooLarge
from veo.services import Services
from veo.web import render
from veo.web.auth import current_user

log = logs.get_logger("veo.web.uploads")

_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file


async def read_bounded(request: Request, limit: int) -> bytes:
    """Read the body, refusing it (413) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"body is larger than {limit} bytes")
        except ValueError:
            raise BadRequest("bad Content-Length") from None
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
    return bytes(buf)


def _parse(content_type: str, body: bytes) -> bytes | None:
    found: list[bytes] = []

    def on_file(f) -> None:  # type: ignore[no-untyped-def]
        if f.field_name == b"file":
            f.file_object.seek(0)
            found.append(f.file_object.read())

    parse_form({"Content-Type": content_type.encode(), "Content-Length": str(len(body)).encode()},
               io.BytesIO(body), lambda _field: None, on_file)
    return found[0] if found else None


async def create_upload(request: Request) -> Response:
    user = await current_user(request)
    svc: Services = request.app.state.services
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise BadRequest("send multipart/form-data with the image in the field 'file'")
    cap = svc.settings.upload_max_bytes
    body = await read_bounded(request, cap + _MULTIPART_OVERHEAD)
    try:
        data = await asyncio.to_thread(_parse, ctype, body)
    except Exception:
        raise BadRequest("malformed multipart body") from None
    if data is None:
        raise BadRequest("multipart field 'file' is missing", details={"field": "file"})
    if len(data) > cap:
        raise PayloadTooLarge(f"file is larger than {cap} bytes", details={"field": "file"})
    info = await asyncio.to_thread(images.inspect, data)
    upload_id = dbmod.new_id("upl")
    key = names.upload(user.id, upload_id, info.ext)
    await svc.storage.put_bytes(key, data, info.content_type)
    row = await svc.db.insert_upload(upload_id, user.id, key, info.content_type, info.width,
                                     info.height, info.size, info.sha256)
    log.info("upload.created", upload_id=upload_id, user_id=user.id, size=info.size)
    return render.JSON(wire.UploadOut(id=row.id, content_type=row.content_type,
                                      width=row.width, height=row.height, size=row.size,
                                      sha256=row.sha256),
                       status_code=201)
