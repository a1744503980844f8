"""Job webhooks signed per Standard Webhooks v1 (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``). The secret is per
user (``GET /api/me``). Deliveries retry with back-off; the same ``webhook-id`` is kept across
retries so receivers can de-duplicate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import httpx
import msgspec
from arq import Retry

from veo import lifecycle, logs
from veo.errors import InvalidRequest
from veo.worker.context import Ctx

log = logs.get_logger("veo.webhooks")

# seconds before attempt n+1 (Standard Webhooks' example schedule, shortened at the long end)
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000)
TIMEOUT = 15.0  # seconds a receiver gets to answer 2xx
MAX_TRIES = len(SCHEDULE) + 1


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def payload(job: dict[str, Any], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": f"job.{job['status']}",
        "timestamp": int(time.time()),
        "data": {
            "id": job["id"], "status": job["status"], "backend": job["backend"],
            "model": job["model"], "error": job["error"], "attempts": job["attempts"],
            "outputs": [{"id": o["id"], "clip": o["clip"], "variant": o["variant"],
                         "size": o["size"], "sha256": o["sha256"],
                         "path": f"/api/jobs/{job['id']}/outputs/{o['id']}"} for o in outputs],
        },
    }


async def deliver_webhook(ctx: Ctx, job_id: str, event_id: str) -> str:
    svc = ctx["services"]
    job = await svc.db.get_job(job_id)
    if job is None or not job["webhook_url"]:
        return "gone"
    try:
        await lifecycle.check_webhook_url(job["webhook_url"], svc.settings.webhook_allow_private)
    except InvalidRequest as exc:
        log.warning("webhook.refused", job_id=job_id, reason=exc.message)
        return "refused"
    _, outputs = await svc.db.clips_and_outputs([job_id])
    body = msgspec.json.encode(payload(job, outputs))
    ts = int(time.time())
    headers = {"content-type": "application/json", "webhook-id": event_id,
               "webhook-timestamp": str(ts),
               "webhook-signature": sign(svc.box.webhook_secret(job["user_id"]), event_id, ts,
                                         body)}
    try_no = int(ctx.get("job_try", 1))  # type: ignore[call-overload]
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
            resp = await client.post(job["webhook_url"], content=body, headers=headers)
        ok = 200 <= resp.status_code < 300
        status: Any = resp.status_code
    except httpx.HTTPError as exc:
        ok, status = False, type(exc).__name__
    if ok:
        log.info("webhook.delivered", job_id=job_id, event_id=event_id, attempt=try_no)
        return "delivered"
    if status == 410 or try_no >= MAX_TRIES:
        log.warning("webhook.abandoned", job_id=job_id, event_id=event_id, status=status,
                    attempt=try_no)
        return "abandoned"
    log.info("webhook.retrying", job_id=job_id, event_id=event_id, status=status, attempt=try_no)
    raise Retry(defer=SCHEDULE[try_no - 1])
