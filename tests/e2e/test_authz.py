"""Every route against anonymous, the owner, another user and an admin."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.harness import Harness, add_key, new_key, png, upload

ANON, OWNER, OTHER, ADMIN = "anonymous", "owner", "other", "admin"


async def test_authz_matrix(harness: Harness) -> None:
    h = harness
    owner, owner_token = await h.user("owner")
    _, other_token = await h.user("other")
    _, admin_token = await h.user("boss", admin=True)
    tokens = {ANON: None, OWNER: owner_token, OTHER: other_token, ADMIN: admin_token}
    key = await add_key(h, owner_token, new_key())
    frame = await upload(h, owner_token, png((1, 2, 3)))
    job = (await h.http.post("/api/jobs", headers=h.auth(owner_token), json={
        "clips": [{"prompt": "p", "first_frame": frame["id"]}]})).json()
    # give the job an output so the output route can be exercised
    await h.svc.storage.put_bytes(f"outputs/{job['id']}/0-0.mp4", b"mp4", "video/mp4")
    await h.svc.storage.put_bytes(f"outputs/{job['id']}/0-0.jpg", b"jpg", "image/jpeg")
    out = {"id": "out_" + "0" * 24}
    await h.svc.db.pool.execute(
        "INSERT INTO outputs (id, job_id, clip, variant, object_key, size, sha256, poster_key)"
        " VALUES ($1, $2, 0, 0, $3, 3, $4, $5)", out["id"], job["id"],
        f"outputs/{job['id']}/0-0.mp4", "0" * 64, f"outputs/{job['id']}/0-0.jpg")
    jid = job["id"]

    def expect(anon: int, owner_: int, other: int, admin: int) -> dict[str, int]:
        return {ANON: anon, OWNER: owner_, OTHER: other, ADMIN: admin}

    public = expect(200, 200, 200, 200)
    own = expect(401, 200, 404, 404)
    admin_only = expect(401, 403, 403, 200)
    cases: list[tuple[str, str, dict[str, Any], dict[str, int]]] = [
        ("GET", "/api/health", {}, public),
        ("GET", "/api/flow/queue/status", {}, public),
        ("GET", "/metrics", {}, public),
        ("GET", "/api/openapi.json", {}, public),
        ("GET", "/api/models", {}, public),
        ("GET", "/api/me", {}, expect(401, 200, 200, 200)),
        ("GET", "/api/keys", {}, expect(401, 200, 200, 200)),
        ("GET", "/api/jobs", {}, expect(401, 200, 200, 200)),
        ("POST", "/api/uploads", {"files": {"file": ("a.png", png((9, 9, 9)), "image/png")}},
         expect(401, 201, 201, 201)),
        ("GET", f"/api/jobs/{jid}", {}, own),
        ("GET", f"/api/jobs/{jid}/outputs/{out['id']}", {}, own),
        ("GET", f"/api/jobs/{jid}/outputs/{out['id']}/poster", {}, own),
        ("POST", f"/api/jobs/{jid}/clips/0/select", {"json": {"variant": 0}}, own),
        ("GET", f"/api/jobs/{jid}/final", {}, expect(401, 404, 404, 404)),
        ("POST", f"/api/jobs/{jid}/final", {"json": {}}, expect(401, 409, 404, 404)),
        ("POST", f"/api/jobs/{jid}/clips/0/redo", {"json": {}}, expect(401, 409, 404, 404)),
        ("POST", f"/api/jobs/{jid}/retry", {}, expect(401, 409, 404, 404)),
        ("POST", f"/api/jobs/{jid}/cancel", {}, own),
        ("GET", f"/api/jobs/{jid}/events", {}, own),  # ends at once: the job is canceled
        ("DELETE", f"/api/keys/{key['id']}", {}, expect(401, 204, 404, 404)),
        ("GET", "/api/admin/flow/auth", {}, admin_only),
        ("POST", "/api/admin/flow/queue/retry-failed", {}, admin_only),
        ("POST", "/api/admin/users", {"json": {"name": "new"}}, expect(401, 403, 403, 201)),
        ("POST", f"/api/admin/users/{owner.id}/tokens", {}, expect(401, 403, 403, 201)),
        ("POST", "/api/admin/flow/auth", {"json": {"cookies": [], "origins": []}},
         expect(401, 403, 403, 201)),
        ("DELETE", f"/api/jobs/{jid}", {}, expect(401, 204, 404, 404)),
    ]
    failures = []
    for method, path, kw, expected in cases:
        # owner last, so its deletes and cancels do not hide the others' answers
        for who in (ANON, OTHER, ADMIN, OWNER):
            headers = h.auth(tokens[who]) if tokens[who] else {}
            resp = await h.http.request(method, path, headers=headers, **kw)
            if resp.status_code != expected[who]:
                failures.append(f"{method} {path} as {who}: {resp.status_code} != "
                                f"{expected[who]} {resp.text[:120]}")
            if resp.status_code >= 400:
                assert "error" in resp.json() and "code" in resp.json()["error"]
    assert not failures, "\n".join(failures)
    bad = await h.http.get("/api/jobs", headers={"Authorization": "Bearer veo_wrong"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    # the other user's listing never shows the owner's job or key
    assert (await h.http.get("/api/jobs", headers=h.auth(other_token))).json()["data"] == []
    assert (await h.http.get("/api/keys", headers=h.auth(other_token))).json()["data"] == []
    _ = owner


async def test_upload_limits(harness: Harness) -> None:
    h = harness
    _, token = await h.user("uploader")
    bad_type = await h.http.post("/api/uploads", headers=h.auth(token),
                                 files={"file": ("x.png", b"GIF89a-not-allowed", "image/png")})
    assert bad_type.status_code == 415
    truncated = await h.http.post("/api/uploads", headers=h.auth(token),
                                  files={"file": ("x.png", png((1, 1, 1))[:40], "image/png")})
    assert truncated.status_code == 415
    missing = await h.http.post("/api/uploads", headers=h.auth(token),
                                files={"other": ("x.png", png((1, 1, 1)), "image/png")})
    assert missing.status_code == 400
    # a declared size over the cap is refused before a byte of the body is read
    host, port = h.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST /api/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                 "Content-Type: multipart/form-data; boundary=x\r\n"
                 f"Content-Length: {1 << 30}\r\n\r\n".encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    assert b" 413 " in status_line
    writer.close()

    # an undeclared (chunked) body is cut off as soon as it passes the cap
    async def endless():  # type: ignore[no-untyped-def]
        for _ in range(64):
            yield b"x" * (1 << 20)

    chunked = await h.http.post("/api/uploads", content=endless(), headers={
        **h.auth(token), "Content-Type": "multipart/form-data; boundary=x"})
    assert chunked.status_code == 413
    count = await h.svc.db.pool.fetchval("SELECT count(*) FROM uploads u JOIN users s ON "
                                         "s.id = u.user_id WHERE s.name = 'uploader'")
    assert count == 0 and await h.svc.storage.list("uploads/") == []
    webp = await h.http.post("/api/uploads", headers=h.auth(token),
                             files={"file": ("f.bin", _webp(), "application/octet-stream")})
    assert webp.status_code == 201 and webp.json()["content_type"] == "image/webp"


def _webp() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (10, 20), (5, 5, 5)).save(buf, "WEBP")
    return buf.getvalue()
