"""A fake Google Flow site (SPEC §8, research/flow-ui.md), good enough to keep the automation
honest: a session cookie with a sign-in redirect, the Notice dialog, ``New project``, a prompt
editor whose submit enables only after real input (UI generation A ``textarea`` or B Slate
``div[role=textbox]``), a settings menu (mode, aspect ratio, outputs per prompt, model), frame
slots with an upload dialog, tiles prepended with a rising ``N%`` then a ``<video>`` (old tiles
stay), a download menu returning an attachment, failure tiles with the real texts and a
``refresh`` retry, the insufficient-credits button replacing submit, and covering toasts.

Prompt markers pick outcomes: ``[policy]``, ``[ratelimit]``, ``[unusual]``, ``[generic]``,
``[slow:N]``. Tests steer the rest from Python: sessions, expiry, credits, UI generation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from veo.sandbox import mp4
from veo.sandbox.serving import LoopbackServer

STATIC = Path(__file__).parent / "flow_static"
COOKIE = "SID"
FAILURES = {
    "policy": "This generation might violate our policies. Please try a different prompt or "
              "send feedback. You have not been charged for this generation.",
    "ratelimit": "You're requesting generations too quickly. Please wait and try again.",
    "unusual": "We noticed some unusual activity. Please try again later.",
    "generic": "Something went wrong. Couldn't generate video.",
}
_SLOW = re.compile(r"\[slow:([\d.]+)\]")


@dataclasses.dataclass
class Generation:
    id: str
    project: str
    prompt: str
    sample: int
    settings: dict[str, Any]
    created: float
    ready_at: float
    outcome: str  # ok | policy | ratelimit | unusual | generic


class FakeFlow(LoopbackServer):
    def __init__(self) -> None:
        self.sessions: dict[str, float] = {}  # cookie -> expiry (monotonic)
        self.ui = "A"
        self.delay = 0.5
        self.credits = True
        self.notice = True
        self.toast = False
        self.history = 6  # old tiles shown on a new project page
        self.auto_login = False
        self.generations: dict[str, Generation] = {}
        self.uploads: dict[str, bytes] = {}
        self.submits: list[dict[str, Any]] = []
        self.downloads: list[str] = []
        self.pages: list[str] = []
        self.app = Starlette(routes=[
            Route("/fx/tools/flow", self._home),
            Route("/fx/tools/flow/project/{pid}", self._project),
            Route("/signin", self._signin, methods=["GET", "POST"]),
            Route("/fx/api/upload", self._upload, methods=["POST"]),
            Route("/fx/api/generate", self._generate, methods=["POST"]),
            Route("/fx/api/status", self._status),
            Route("/fx/api/retry/{gid}", self._retry, methods=["POST"]),
            Route("/fx/api/media/{gid}", self._media),
            Route("/fx/api/download/{gid}", self._download),
            Route("/fx/static/{name}", self._static),
        ])

    # control
    def new_session(self, ttl: float = 3600.0) -> str:
        sid = secrets.token_hex(16)
        self.sessions[sid] = time.monotonic() + ttl
        return sid

    def expire_all(self) -> None:
        self.sessions.clear()

    def storage_state(self, sid: str | None = None) -> dict[str, Any]:
        """A Playwright storage state holding a valid session for this site."""
        sid = sid or self.new_session()
        host = self.url.split("//", 1)[1].split(":")[0]
        return {"cookies": [{"name": COOKIE, "value": sid, "domain": host, "path": "/",
                             "expires": -1, "httpOnly": True, "secure": False,
                             "sameSite": "Lax"}],
                "origins": []}

    @property
    def home(self) -> str:
        return f"{self.url}/fx/tools/flow"

    # helpers
    def _valid(self, request: Request) -> bool:
        sid = request.cookies.get(COOKIE)
        return bool(sid) and self.sessions.get(sid or "", 0) > time.monotonic()

    def _gate(self, request: Request) -> Response | None:
        if self._valid(request):
            return None
        return RedirectResponse(f"/signin?continue={request.url.path}", 302)

    def _page(self, name: str, **values: Any) -> HTMLResponse:
        html = (STATIC / name).read_text()
        html = html.replace("__CONFIG__", json.dumps(values))
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    # pages
    async def _home(self, request: Request) -> Response:
        self.pages.append("home")
        return self._gate(request) or self._page("home.html", notice=self.notice)

    async def _project(self, request: Request) -> Response:
        self.pages.append("project")
        # earlier finished videos of the account show up as old tiles, as in the real grid:
        # a driver that takes "the first video" downloads the wrong one
        recent = list(self.generations.values())[-self.history:] if self.history else []
        history = [{"id": g.id, "state": "done", "src": f"/fx/api/media/{g.id}"}
                   for g in recent[::-1] if self._state(g)["state"] == "done"]
        return self._gate(request) or self._page(
            "project.html", ui=self.ui, credits=self.credits, toast=self.toast,
            project=request.path_params["pid"], history=history)

    async def _signin(self, request: Request) -> Response:
        """A sign-in page. Submitting it signs in (the person at the keyboard, in a demo);
        ``auto_login`` submits it by itself after a moment, standing in for that person."""
        self.pages.append("signin")
        target = request.query_params.get("continue", "/fx/tools/flow")
        if not target.startswith("/"):
            target = "/fx/tools/flow"
        if request.method == "POST":
            resp = RedirectResponse(target, 303)
            resp.set_cookie(COOKIE, self.new_session(), httponly=True, samesite="lax")
            return resp
        auto = ("<script>setTimeout(() => document.forms[0].submit(), 300)</script>"
                if self.auto_login else "")
        return HTMLResponse("<!doctype html><title>Sign in - Google Accounts</title>"
                            "<h1>Sign in</h1><p>to continue to Flow</p>"
                            f"<form method='post' action='/signin?continue={target}'>"
                            "<label>Email or phone <input type='email' name='id'></label>"
                            "<button>Next</button></form>" + auto)

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if "/" in name or not (STATIC / name).is_file():
            return Response(status_code=404)
        return Response((STATIC / name).read_bytes(), media_type="application/javascript")

    # api
    def _auth(self, request: Request) -> Response | None:
        if self._valid(request):
            return None
        return JSONResponse({"error": "UNAUTHENTICATED"}, 401)

    async def _upload(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        form = await request.form()
        upload = form["file"]
        data = await upload.read()  # type: ignore[union-attr]
        uid = uuid.uuid4().hex[:12]
        self.uploads[uid] = data
        return JSONResponse({"id": uid, "sha256": hashlib.sha256(data).hexdigest()})

    async def _generate(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        body = await request.json()
        self.submits.append(body)
        prompt = str(body.get("prompt", ""))
        outcome = next((k for k in FAILURES if f"[{k}]" in prompt), "ok")
        m = _SLOW.search(prompt)
        delay = float(m.group(1)) if m else self.delay
        now = time.monotonic()
        ids = []
        for sample in range(int(body.get("count", 1))):
            gid = uuid.uuid4().hex[:16]
            self.generations[gid] = Generation(gid, str(body.get("project")), prompt, sample,
                                               body, now, now + delay, outcome)
            ids.append(gid)
        return JSONResponse({"ids": ids})

    def _state(self, g: Generation) -> dict[str, Any]:
        now = time.monotonic()
        span = max(g.ready_at - g.created, 1e-6)
        if now < g.ready_at:
            return {"id": g.id, "state": "running",
                    "progress": int(min(99, 100 * (now - g.created) / span))}
        if g.outcome != "ok":
            return {"id": g.id, "state": "failed", "message": FAILURES[g.outcome]}
        return {"id": g.id, "state": "done", "src": f"/fx/api/media/{g.id}"}

    async def _status(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        ids = request.query_params.get("ids", "").split(",")
        return JSONResponse([self._state(self.generations[i]) for i in ids
                             if i in self.generations])

    async def _retry(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        g = self.generations.get(request.path_params["gid"])
        if g is None:
            return Response(status_code=404)
        now = time.monotonic()
        g.created, g.ready_at = now, now + self.delay
        return JSONResponse({"ok": True})

    def _video(self, g: Generation) -> bytes:
        frames = g.settings.get("frames") or {}
        ident = {"backend": "flow", "generation": g.id, "prompt": g.prompt, "sample": g.sample,
                 "prompt_sha256": hashlib.sha256(g.prompt.encode()).hexdigest(),
                 "aspect": g.settings.get("aspect"), "model": g.settings.get("model"),
                 "count": g.settings.get("count"), "mode": g.settings.get("mode"),
                 "first_frame_sha256": self._frame_sha(frames.get("start")),
                 "last_frame_sha256": self._frame_sha(frames.get("end"))}
        return mp4.make(ident)

    def _frame_sha(self, uid: str | None) -> str | None:
        if not uid or uid not in self.uploads:
            return None
        return hashlib.sha256(self.uploads[uid]).hexdigest()

    def _finished(self, request: Request) -> Generation | Response:
        """The finished generation a media URL names, or the error response to send."""
        if not self._valid(request):
            return Response(status_code=401)
        g = self.generations.get(request.path_params["gid"])
        if g is None or self._state(g)["state"] != "done":
            return Response(status_code=404)
        return g

    async def _media(self, request: Request) -> Response:
        g = self._finished(request)
        if isinstance(g, Response):
            return g
        return Response(self._video(g), media_type="video/mp4")

    async def _download(self, request: Request) -> Response:
        g = self._finished(request)
        if isinstance(g, Response):
            return g
        self.downloads.append(g.id)
        return Response(self._video(g), media_type="video/mp4", headers={
            "Content-Disposition": f'attachment; filename="flow_{g.id}_720p.mp4"'})
