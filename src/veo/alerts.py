"""Operator alerts: one POST to ``ALERT_WEBHOOK_URL`` per cause while the cause lasts.

A cause (Flow login expired for an account, every key of a user cooling, a Flow account cooling
down, selector drift found by the canary) is recorded in PostgreSQL; the first occurrence puts
an alert in the outbox, which ``veo.worker.outbox`` delivers with retries, so an alert whose POST
failed is tried again rather than forgotten, and a Redis loss loses none. When the cause ends,
``clear`` forgets it and the next occurrence alerts again.
"""

from __future__ import annotations

import uuid
from typing import Any

from veo import logs
from veo.db import Db

log = logs.get_logger("veo.alerts")

FLOW_LOGIN = "flow_login_required"
KEYS_EXHAUSTED = "api_keys_exhausted"
FLOW_COOLING = "flow_account_cooling"
CANARY = "flow_canary_failed"


async def raise_alert(db: Db, kind: str, scope: str, payload: dict[str, Any]) -> bool:
    """Queue an alert unless this cause already alerted; True when one was queued."""
    if not await db.raise_cause(kind, scope):
        return False
    await db.add_outbox(f"alert_{uuid.uuid4().hex[:24]}", "alert",
                        {"kind": kind, "scope": scope, **payload})
    log.info("alert.queued", kind=kind, scope=scope)
    return True


async def clear(db: Db, kind: str, scope: str) -> None:
    await db.clear_cause(kind, scope)
