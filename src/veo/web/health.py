"""Health, Flow queue status and Prometheus metrics (no auth: counts only)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from veo import logs, metrics, names, wire
from veo.events import Hub
from veo.services import Services
from veo.web import render

log = logs.get_logger("veo.web.health")
CHECK_TIMEOUT = 3.0  # seconds a dependency may take before health reports it down


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
        return name, "ok"
    except Exception as exc:
        log.warning("health.check_failed", check=name, error=type(exc).__name__)
        return name, f"error: {type(exc).__name__}"


async def _driver(svc: Services, account: str) -> str | None:
    raw = await svc.redis.get(names.flow_lease(account))
    return raw.decode() if isinstance(raw, bytes) else raw


async def health(request: Request) -> Response:
    svc: Services = request.app.state.services
    s = svc.settings
    checks = dict(await asyncio.gather(
        _check("db", svc.db.ping()), _check("redis", svc.redis.ping()),
        _check("storage", svc.storage.check())))
    ok = all(v == "ok" for v in checks.values())
    available = await svc.db.available_keys() if checks["db"] == "ok" else 0
    auth_configured = needs_auth = False
    driver = None
    if checks["storage"] == "ok":
        auth_configured = await svc.storage.head(s.flow_storage_state_key) is not None
    if checks["redis"] == "ok":
        needs_auth = await svc.lifecycle.flow_paused(s.flow_account)
        driver = await _driver(svc, s.flow_account)
    acct = await svc.db.flow_account(s.flow_account) if checks["db"] == "ok" else None
    canary = None
    if acct is not None and acct.canary:
        try:
            canary = msgspec.convert(acct.canary, wire.Canary)
        except msgspec.ValidationError:
            canary = None
    body = wire.Health(
        status="ok" if ok else "degraded",
        backends=wire.Backends(
            api=wire.ApiBackendHealth(enabled=True, available_keys=available),
            flow=wire.FlowBackendHealth(
                enabled=s.flow_enabled, auth_configured=auth_configured,
                queue_configured=checks["redis"] == "ok", needs_auth=needs_auth,
                account=s.flow_account, cooling_until=acct.cooling_until if acct else None,
                driver=driver, canary=canary)),
        checks=checks)
    return render.JSON(body, status_code=200 if ok else 503)


async def queue_status(request: Request) -> Response:
    svc: Services = request.app.state.services
    counts = await svc.db.queue_status()
    return render.JSON(wire.QueueStatus(
        pending=counts.pending, processing=counts.processing, failed=counts.failed,
        paused=await svc.lifecycle.flow_paused(svc.settings.flow_account),
        waiting_auth=counts.waiting_auth))


def gauges(svc: Services, hub: Hub) -> metrics.SharedGauges:
    """The shared-state gauges of the web process, refreshed at most every GAUGE_TTL."""

    async def refresh() -> None:
        metrics.ACTIVE.clear()
        depth: dict[str, int] = {"api": 0, "flow": 0}
        for backend, status, reason, n in await svc.db.active_counts():
            metrics.ACTIVE.labels(backend, status, reason).set(n)
            if status == "queued":
                depth[backend] = depth.get(backend, 0) + n
        for backend, n in depth.items():
            metrics.QUEUE_DEPTH.labels(backend).set(n)
        metrics.KEYS.clear()
        for status, n in (await svc.db.key_counts()).items():
            metrics.KEYS.labels(status).set(n)
        account = svc.settings.flow_account
        metrics.FLOW_PAUSED.labels(account).set(int(await svc.lifecycle.flow_paused(account)))
        metrics.SSE_STREAMS.set(hub.open_streams)

    return metrics.SharedGauges(refresh)


async def serve_metrics(request: Request) -> Response:
    shared: metrics.SharedGauges = request.app.state.gauges
    return Response(await shared.render(),
                    media_type="text/plain; version=0.0.4; charset=utf-8")
