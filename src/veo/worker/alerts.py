"""Operator alerts POSTed to ``ALERT_WEBHOOK_URL``, at most once per cause while it lasts."""

from __future__ import annotations

from typing import Any

import httpx

from veo import keys, logs
from veo.services import Services

log = logs.get_logger("veo.alerts")

ALERT_DEDUP_SECONDS = 3600  # one alert per cause per hour, so a long outage is not a flood
ALERT_TIMEOUT = 10.0  # seconds; an alert receiver that hangs must not stall the worker


async def send_once(svc: Services, kind: str, scope: str, payload: dict[str, Any]) -> bool:
    url = svc.settings.alert_webhook_url
    if not url:
        return False
    marker = f"veo:alert:{kind}:{scope}"
    if not await svc.redis.set(marker, "1", nx=True, ex=ALERT_DEDUP_SECONDS):
        return False
    try:
        async with httpx.AsyncClient(timeout=ALERT_TIMEOUT) as client:
            resp = await client.post(url, json=payload)
        log.info("alert.sent", kind=kind, status=resp.status_code)
        return resp.is_success
    except httpx.HTTPError as exc:
        log.warning("alert.failed", kind=kind, error=type(exc).__name__)
        await svc.redis.delete(marker)
        return False


async def clear(svc: Services, kind: str, scope: str) -> None:
    await svc.redis.delete(f"veo:alert:{kind}:{scope}")


async def flow_login_required(svc: Services, account: str, *, job_id: str | None,
                              detail: str) -> None:
    """Set the account's pause flag, record it, log and alert (once)."""
    first = await svc.redis.set(keys.flow_paused_flag(account), "1", nx=True)
    await svc.db.flow_needs_auth(account)
    if first:
        log.warning("flow.login_required", account=account, job_id=job_id, detail=detail)
    await send_once(svc, "flow_login_required", account, {
        "kind": "flow_login_required", "account": account, "job_id": job_id,
        "message": f"Flow needs a new login for account {account!r}: run "
                   "`veo-auth export --upload` or POST /api/admin/flow/auth"})
