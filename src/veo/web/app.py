"""The Starlette application: routes, one error handler, and a lifespan that builds services."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from veo import gemini, logs, sandbox
from veo.config import Settings
from veo.errors import VeoError
from veo.events import Hub
from veo.keypool import KeyPool
from veo.services import Services, build_services
from veo.web import admin, api_keys, health, jobs, openapi, render, uploads

log = logs.get_logger("veo.web")
STATIC = Path(__file__).resolve().parent.parent / "static"


async def _veo_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VeoError)
    if exc.status >= 500:
        log.error("web.error", path=request.url.path, code=exc.code, message=exc.message)
    return render.error(exc.status, exc.code, exc.message, exc.details,
                        headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    return render.error(exc.status_code, code, str(exc.detail), headers=headers)


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("web.unhandled", path=request.url.path)
    return render.error(500, "internal", "internal error; it has been logged")


async def _openapi(request: Request) -> Response:
    return render.JSON(request.app.state.openapi)


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html")


def routes() -> list[Any]:
    job = "/api/jobs/{job_id}"
    return [
        Route("/", _index),
        Route("/api/health", health.health),
        Route("/api/flow/queue/status", health.queue_status),
        Route("/metrics", health.serve_metrics),
        Route("/api/openapi.json", _openapi),
        Route("/api/models", jobs.models),
        Route("/api/me", admin.me),
        Route("/api/uploads", uploads.create_upload, methods=["POST"]),
        Route("/api/keys", api_keys.create, methods=["POST"]),
        Route("/api/keys", api_keys.list_keys, methods=["GET"]),
        Route("/api/keys/{key_id}", api_keys.delete, methods=["DELETE"]),
        Route("/api/jobs", jobs.create, methods=["POST"]),
        Route("/api/jobs", jobs.list_jobs, methods=["GET"]),
        Route(job, jobs.get, methods=["GET"]),
        Route(job, jobs.delete, methods=["DELETE"]),
        Route(f"{job}/events", jobs.events, methods=["GET"]),
        Route(f"{job}/cancel", jobs.cancel, methods=["POST"]),
        Route(f"{job}/retry", jobs.retry, methods=["POST"]),
        Route(f"{job}/clips/{{index}}/select", jobs.select, methods=["POST"]),
        Route(f"{job}/clips/{{index}}/redo", jobs.redo, methods=["POST"]),
        Route(f"{job}/final", jobs.build_final, methods=["POST"]),
        Route(f"{job}/final", jobs.final_video, methods=["GET"]),
        Route(f"{job}/final/poster", jobs.final_poster, methods=["GET"]),
        Route(f"{job}/final/link", jobs.final_link, methods=["GET"]),
        Route(f"{job}/outputs/{{output_id}}/link", jobs.output_link, methods=["GET"]),
        Route("/api/files/{token}", jobs.signed_file, methods=["GET"]),
        Route(f"{job}/outputs/{{output_id}}", jobs.output, methods=["GET"]),
        Route(f"{job}/outputs/{{output_id}}/poster", jobs.poster, methods=["GET"]),
        Route("/api/admin/users", admin.create_user, methods=["POST"]),
        Route("/api/admin/users/{user_id}/tokens", admin.revoke_tokens, methods=["DELETE"]),
        Route("/api/admin/users/{user_id}/tokens", admin.create_token, methods=["POST"]),
        Route("/api/admin/flow/auth", admin.upload_flow_auth, methods=["POST"]),
        Route("/api/admin/flow/auth", admin.get_flow_auth, methods=["GET"]),
        Route("/api/admin/flow/queue/retry-failed", admin.retry_failed_flow, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ]


def create_app(settings: Settings, services: Services | None = None, *,
               sandbox_fakes: bool = True) -> Starlette:
    """Build the app. Tests may pass ready services; otherwise the lifespan builds them.
    With ``VEO_SANDBOX=1`` the app also serves the fakes, unless the caller runs its own."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc = services or await build_services(settings)
        app.state.services = svc
        fakes = (await sandbox.start_beside_web(settings, svc)
                 if settings.sandbox and sandbox_fakes else [])
        gem = gemini.Gemini(settings)
        app.state.validate_key = gem.validate_key
        hub = Hub(svc.redis, per_user=settings.sse_streams_per_user)
        await hub.start()
        app.state.hub = hub
        app.state.gauges = health.gauges(svc, hub)
        await KeyPool(svc.db, svc.box, settings).sync_operator_pool(settings.gemini_api_keys)
        log.info("web.started", storage=svc.storage.backend, sandbox=settings.sandbox)
        try:
            yield
        finally:
            await hub.stop()
            await gem.close()
            for fake in fakes:
                await fake.stop()
            if services is None:
                await svc.close()

    app = Starlette(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers={VeoError: _veo_error, HTTPException: _http_error,
                            Exception: _crash},
    )
    app.state.openapi = openapi.document()
    return app
