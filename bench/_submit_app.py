"""The real app plus a trivial JSON route, for bench/submit.py (run by uvicorn --factory)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from veo import config
from veo.web.app import create_app


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def build() -> Starlette:
    app = create_app(config.load())
    app.router.routes.insert(0, Route("/bench/ping", ping, methods=["POST"]))
    return app
