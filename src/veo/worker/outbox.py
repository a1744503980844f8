"""Delivers the outbox: job webhooks (signed, to the checked address, no redirects) and
operator alerts (to ``ALERT_WEBHOOK_URL``). Rows stay in PostgreSQL until delivered or given
up, so neither a Redis loss nor a dead worker drops one; a row a dead sender had claimed is
retried when its lease ends.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import msgspec

from veo import logs, metrics, webhooks
from veo.errors import InvalidRequest
from veo.records import OutboxItem
from veo.services import Services

log = logs.get_logger("veo.outbox")

BATCH = 20  # rows claimed per round
LEASE = 60.0  # seconds a claimed row is this sender's before another may try it
IDLE = 1.0  # seconds between rounds when nothing was due
# alerts are for people on call: retry quickly, then give up after about an hour
ALERT_SCHEDULE = (5, 30, 120, 600, 1800)


async def deliver(svc: Services, item: OutboxItem) -> str:
    """Try one row once; record the outcome. Returns delivered | retrying | abandoned."""
    try:
        status = await (_webhook(svc, item) if item.kind == "webhook" else _alert(svc, item))
        error = f"HTTP {status}"
        ok = 200 <= status < 300
    except InvalidRequest as exc:
        if exc.code == webhooks.UNRESOLVED:  # DNS trouble may pass: retry like a failed POST
            status, error, ok = 0, exc.message, False
        else:  # the webhook URL now points somewhere it may not
            return await _refused(svc, item, exc)
    except (httpx.HTTPError, OSError) as exc:
        ok, status, error = False, 0, type(exc).__name__
    event = "webhook" if item.kind == "webhook" else "alert"
    if ok:
        await svc.db.outbox_delivered(item.id)
        log.info(f"{event}.delivered", job_id=item.job_id, event_id=item.id,
                 attempt=item.attempts)
        metrics.WEBHOOKS.labels(item.kind, "delivered").inc()
        return "delivered"
    schedule = webhooks.SCHEDULE if item.kind == "webhook" else ALERT_SCHEDULE
    if status == 410 or item.attempts > len(schedule):
        await svc.db.outbox_abandoned(item.id, error)
        log.warning(f"{event}.abandoned", job_id=item.job_id, event_id=item.id, status=status,
                    attempt=item.attempts)
        metrics.WEBHOOKS.labels(item.kind, "abandoned").inc()
        return "abandoned"
    delay = schedule[item.attempts - 1]
    await svc.db.outbox_retry(item.id, delay, error)
    log.info(f"{event}.retrying", job_id=item.job_id, event_id=item.id, status=status,
             attempt=item.attempts, defer=delay)
    return "retrying"


async def _refused(svc: Services, item: OutboxItem, exc: InvalidRequest) -> str:
    await svc.db.outbox_abandoned(item.id, exc.message)
    log.warning("webhook.refused", job_id=item.job_id, event_id=item.id, reason=exc.message)
    metrics.WEBHOOKS.labels(item.kind, "refused").inc()
    return "abandoned"


async def _webhook(svc: Services, item: OutboxItem) -> int:
    assert item.url is not None and item.job_id is not None
    target = await webhooks.check_url(item.url,
                                      allow_private=svc.settings.webhook_allow_private)
    job = await svc.db.get_job(item.job_id)
    if job is None:
        raise InvalidRequest("the job was deleted")
    body = msgspec.json.encode(item.payload)
    ts = int(time.time())
    headers = {"content-type": "application/json", "webhook-id": item.id,
               "webhook-timestamp": str(ts),
               "webhook-signature": webhooks.sign(svc.box.webhook_secret(job.user_id), item.id,
                                                  ts, body)}
    return await webhooks.post(target, body, headers)


async def _alert(svc: Services, item: OutboxItem) -> int:
    url = svc.settings.alert_webhook_url
    if not url:
        return 204  # nowhere to send: the log event is the alert
    async with httpx.AsyncClient(timeout=webhooks.TIMEOUT, follow_redirects=False) as client:
        # the id stays the same across retries, so a receiver can tell a retry from a new alert
        resp = await client.post(url, json={"id": item.id, **item.payload})
    return resp.status_code


async def run_forever(svc: Services) -> None:
    while True:
        try:
            items = await svc.db.claim_outbox(BATCH, LEASE)
            if items:
                await asyncio.gather(*(deliver(svc, i) for i in items))
                continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("outbox.error", error=type(exc).__name__, detail=str(exc)[:200])
        await asyncio.sleep(IDLE)
