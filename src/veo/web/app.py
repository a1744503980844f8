"""The Starlette application: routes, one error handler, and a lifespan that builds services."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
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


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html")


Endpoint = Callable[[Request], Awaitable[Response]]


def _path(path: str, **handlers: Endpoint) -> Route:
    """One route for every method of ``path``. Starlette answers a wrong method with the
    ``Allow`` of the first route whose path matched, so a path split over several routes would
    name only some of its methods; the OpenAPI document lists each path's methods exactly
    (a test compares the two)."""
    if len(handlers) == 1:
        return Route(path, next(iter(handlers.values())), methods=list(handlers))

    async def dispatch(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, dispatch, methods=list(handlers))


def routes() -> list[Any]:
    job = "/api/jobs/{job_id}"
    return [
        _path("/", GET=_index),
        _path("/api/health", GET=health.health),
        _path("/api/flow/queue/status", GET=health.queue_status),
        _path("/metrics", GET=health.serve_metrics),
        _path("/api/openapi.json", GET=openapi.serve),
        _path("/api/models", GET=jobs.models),
        _path("/api/me", GET=admin.me),
        _path("/api/uploads", POST=uploads.create_upload),
        _path("/api/keys", GET=api_keys.list_keys, POST=api_keys.create),
        _path("/api/keys/{key_id}", DELETE=api_keys.delete),
        _path("/api/jobs", GET=jobs.list_jobs, POST=jobs.create),
        _path(job, GET=jobs.get, DELETE=jobs.delete),
        _path(f"{job}/events", GET=jobs.events),
        _path(f"{job}/cancel", POST=jobs.cancel),
        _path(f"{job}/retry", POST=jobs.retry),
        _path(f"{job}/clips/{{index}}/select", POST=jobs.select),
        _path(f"{job}/clips/{{index}}/redo", POST=jobs.redo),
        _path(f"{job}/final", GET=jobs.final_video, POST=jobs.build_final),
        _path(f"{job}/final/poster", GET=jobs.final_poster),
        _path(f"{job}/final/link", GET=jobs.final_link),
        _path(f"{job}/outputs/{{output_id}}", GET=jobs.output),
        _path(f"{job}/outputs/{{output_id}}/link", GET=jobs.output_link),
        _path(f"{job}/outputs/{{output_id}}/poster", GET=jobs.poster),
        _path("/api/files/{token}", GET=jobs.signed_file),
        _path("/api/admin/users", POST=admin.create_user),
        _path("/api/admin/users/{user_id}/tokens", DELETE=admin.revoke_tokens,
              POST=admin.create_token),
        _path("/api/admin/flow/auth", GET=admin.get_flow_auth, POST=admin.upload_flow_auth),
        _path("/api/admin/flow/queue/retry-failed", POST=admin.retry_failed_flow),
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
    return app
