"""Health, Flow queue status and Prometheus metrics (no auth: counts only)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from veo import lifecycle, logs, wire
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


async def health(request: Request) -> Response:
    svc: Services = request.app.state.services
    s = svc.settings
    checks = dict(await asyncio.gather(
        _check("db", svc.db.ping()), _check("redis", svc.redis.ping()),
        _check("storage", svc.storage.check())))
    ok = all(v == "ok" for v in checks.values())
    available = await svc.db.available_keys() if checks["db"] == "ok" else 0
    auth_configured = needs_auth = False
    if checks["storage"] == "ok":
        auth_configured = await svc.storage.head(s.flow_storage_state_key) is not None
    if checks["redis"] == "ok":
        needs_auth = await lifecycle.flow_paused(svc, s.flow_account)
    body = wire.Health(
        status="ok" if ok else "degraded",
        backends=wire.Backends(
            api=wire.ApiBackendHealth(enabled=True, available_keys=available),
            flow=wire.FlowBackendHealth(enabled=s.flow_enabled,
                                           auth_configured=auth_configured,
                                           queue_configured=checks["redis"] == "ok",
                                           needs_auth=needs_auth, account=s.flow_account)),
        checks=checks)
    return render.JSON(body, status_code=200 if ok else 503)


async def queue_status(request: Request) -> Response:
    svc: Services = request.app.state.services
    row = await svc.db.queue_status()
    return render.JSON(wire.QueueStatus(
        pending=row["pending"], processing=row["processing"], failed=row["failed"],
        paused=await lifecycle.flow_paused(svc, svc.settings.flow_account),
        waiting_auth=row["waiting_auth"]))


async def metrics(request: Request) -> Response:
    svc: Services = request.app.state.services
    lines = [
        "# HELP veo_jobs Jobs by backend and status.", "# TYPE veo_jobs gauge",
    ]
    for r in await svc.db.status_counts():
        lines.append(f'veo_jobs{{backend="{r["backend"]}",status="{r["status"]}"}} {r["n"]}')
    lines += ["# HELP veo_queue_depth Jobs waiting to run.", "# TYPE veo_queue_depth gauge"]
    q = await svc.db.queue_status()
    lines.append(f'veo_queue_depth{{backend="flow"}} {q["pending"]}')
    lines += ["# HELP veo_job_duration_seconds Run time of finished jobs.",
              "# TYPE veo_job_duration_seconds summary"]
    for r in await svc.db.duration_stats():
        labels = f'backend="{r["backend"]}",status="{r["status"]}"'
        lines.append(f"veo_job_duration_seconds_sum{{{labels}}} {float(r['seconds']):.3f}")
        lines.append(f"veo_job_duration_seconds_count{{{labels}}} {r['n']}")
    lines += ["# HELP veo_api_keys Gemini keys by state.", "# TYPE veo_api_keys gauge"]
    for status, n in sorted((await svc.db.key_counts()).items()):
        lines.append(f'veo_api_keys{{status="{status}"}} {n}')
    paused = int(await lifecycle.flow_paused(svc, svc.settings.flow_account))
    lines += ["# HELP veo_flow_paused 1 while Flow work waits for a new login.",
              "# TYPE veo_flow_paused gauge",
              f'veo_flow_paused{{account="{svc.settings.flow_account}"}} {paused}']
    return PlainTextResponse("\n".join(lines) + "\n",
                             media_type="text/plain; version=0.0.4; charset=utf-8")
