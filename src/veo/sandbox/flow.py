"""A fake of Google Flow as flow.google.com serves it today (the Angular app, "generation C").

What it reproduces, because the driver depends on it or because it has broken tools before:
- a signed-out (or revoked) session gets a 200 document that hops to ``/about`` 0.2-0.4 s later,
  so the URL right after ``goto`` says nothing; a re-verification hop to an accounts page, an
  ``/unavailable`` account, and (switchable) the rejection of headless browsers at
  ``/v3/signin/rejected``;
- blockers before the first click: the Google cookie bar, promo dialogs that mount late, agent
  mode hiding the settings trigger, a one-time upload-consent dialog;
- a ProseMirror-like editor that registers only trusted input; submit enabling ~100 ms later,
  replaced by the insufficient-credits warning when the settings cost more than the balance;
- the settings pane of radio groups (``aria-checked``), the model menu (with a "[Lower
  Priority]" twin listed first), model-dependent durations and resolutions;
- frame upload through the toolbar menu, a searchable asset picker and frame chips;
- the page's own batchexecute traffic: a submit RPC per kind, a reCAPTCHA-like single-use
  token minted ~120 ms before it, ``jwpduf`` status polls, ``as29s`` signed URLs some seconds
  after a record is done; pending tiles with percentages, then video or error tiles, older tiles
  kept;
- a signed content URL on this origin that needs the session cookie, beside a JPEG poster.

Markup variants (``variant``) render the same app differently within what is known of it:
localised labels, per-build class names, chips with or without text, wrapper elements, overlays
mounting late or in another order, the model menu in the pane or as a composer chip.

Prompt markers pick outcomes: ``[policy]``, ``[generic]`` (a record fails), ``[ratelimit]``,
``[quota]``, ``[unusual]`` (the submit is refused), ``[slow:N]`` (N seconds of generation).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import io
import json
import random
import re
import secrets
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from PIL import Image
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from veo.sandbox import mp4
from veo.sandbox.serving import LoopbackServer

STATIC = Path(__file__).parent / "flow_static"
COOKIE = "SID"
RPC_PATH = "/_/AiSandboxAngularFrontend/data/batchexecute"
UPLOAD_PATH = "/_/AiSandboxAngularFrontend/upload"
SUBMIT_RPCS = {"YhhmEf": "text", "eb1hJf": "image", "nprQif": "frames", "MZZa6b": "ingredients"}
STATUS_RPC = "jwpduf"
URL_RPC = "as29s"
SITE_KEY = "6LdsFwEsAAAAAFakeFlowSiteKeyForTheSandbox"
# drift {"rpc"}: a build whose RPCs have other ids, so only the tiles tell what happened
RPC_ALIASES = {"QxZ9pe": "YhhmEf", "Lm2nOp": "eb1hJf", "Rs4tUv": "nprQif", "Wx6yZa": STATUS_RPC,
               "Bc8dEf": URL_RPC}
# record statuses as the page's polls carry them; FAILED is this fake's choice (not observed)
SUBMITTED, RUNNING, DONE, FAILED = 6, 2, 3, 4

VARIANTS: dict[str, dict[str, Any]] = {
    # the app as the notes describe it, in English
    "plain": {"lang": "en", "rebuilt": False, "chip_text": True, "wrappers": False,
              "overlays": "early", "agent": False, "model_menu": "pane",
              "reverse_tiles": False},
    # Korean labels and aria-labels; agent mode on at load
    "localized": {"lang": "ko", "rebuilt": False, "chip_text": True, "wrappers": False,
                  "overlays": "early", "agent": True, "model_menu": "pane",
                  "reverse_tiles": False},
    # another build: renamed component classes, hashed attributes, icon-only chips, wrappers,
    # the model menu on a composer chip, groups in another order, Portuguese
    "rebuilt": {"lang": "pt", "rebuilt": True, "chip_text": False, "wrappers": True,
                "overlays": "early", "agent": False, "model_menu": "chip",
                "reverse_tiles": True},
    # overlays that mount late and in another order (promo after the first settings click,
    # cookie bar a moment later, a promo without a close icon), agent mode on
    "late": {"lang": "en", "rebuilt": False, "chip_text": True, "wrappers": True,
             "overlays": "late", "agent": True, "model_menu": "chip", "reverse_tiles": True},
}

MODELS: dict[str, dict[str, Any]] = {
    # label: credits per output, durations offered, resolutions offered
    "Omni 1.1 Flash": {"cost": 10, "durations": [4, 5, 6, 7, 8, 9, 10],
                       "resolutions": ["360p", "720p"]},
    "Veo 3.1 - Lite [Lower Priority]": {"cost": 0, "durations": [4, 6, 8],
                                        "resolutions": ["720p"]},
    "Veo 3.1 - Lite": {"cost": 10, "durations": [4, 6, 8], "resolutions": ["720p"]},
    "Veo 3.1 - Fast": {"cost": 20, "durations": [4, 6, 8], "resolutions": ["720p"]},
    "Veo 3.1 - Quality": {"cost": 100, "durations": [4, 6, 8], "resolutions": ["720p"]},
}

# marker -> (where it fails, reason, gRPC code, message)
OUTCOMES: dict[str, tuple[str, str, int, str]] = {
    "policy": ("record", "PUBLIC_ERROR_UNSAFE_GENERATION", 3, "unsafe generation"),
    "generic": ("record", "PUBLIC_ERROR_SOMETHING_WENT_WRONG", 13, "internal error"),
    "ratelimit": ("submit", "PUBLIC_ERROR_USER_REQUESTS_THROTTLED", 8, "Resource exhausted"),
    "quota": ("submit", "PUBLIC_ERROR_USER_QUOTA_REACHED", 8, "Resource exhausted"),
    "unusual": ("submit", "PUBLIC_ERROR_UNUSUAL_ACTIVITY", 7, "reCAPTCHA evaluation failed"),
}
_SLOW = re.compile(r"\[slow:([\d.]+)\]")
_HEADLESS = re.compile(r"HeadlessChrome", re.IGNORECASE)
_UUID = re.compile(r"^[0-9a-fA-F-]{8,64}$")


@dataclasses.dataclass
class Workflow:
    id: str
    session: str
    project: str
    prompt: str
    rpc: str
    settings: dict[str, Any]
    frames: dict[str, str | None]  # slot -> sha256 of the uploaded bytes
    media: list[str]
    submission: int
    created: float
    delay: float
    outcome: str  # ok | policy | generic
    cost: int
    refunded: bool = False


@dataclasses.dataclass
class Media:
    id: str
    workflow: str
    sample: int
    done_at: float | None = None
    url_at: float | None = None
    video: bytes | None = None
    poster: bytes | None = None


class FakeFlow(LoopbackServer):
    """The fake site. Controls, set between generations (``reset()`` restores them):

    - ``variant``: one of ``VARIANTS``;
    - timings: ``delay`` (seconds a generation runs), ``poll_interval`` (the page's ``jwpduf``
      period; real ~5 s), ``url_delay`` (done record -> signed URL; real 2-8 s), ``hop_delay``,
      ``token_lead``, ``upload_delay``, ``boot_delay``, ``overlay_animation``;
    - ``distinct_videos`` (False: one shared picture per length and shape, for benchmarks);
    - account: ``credits`` (balance; True/False for plenty/none), ``history`` (older tiles on a
      fresh project), ``unavailable``, ``signed_out_to`` (``about`` | ``accounts``) with
      ``accounts_base`` (empty: this origin), ``expire_all()``, ``new_session()``,
      ``auto_login`` (the sign-in page completes itself);
    - browser: ``refuse_headless`` with ``refusal`` (``redirect`` to /v3/signin/rejected, or
      ``403``);
    - page: ``promos``, ``cookie_bar``, ``drift`` (``"radios"``: settings in markup no driver
      knows; ``"rpc"``: RPCs under other ids; ``"urls"``: URL answers in another shape;
      ``"names"``: a picker that shows no file names).

    Records: ``submits`` (what each submit RPC carried and answered), ``rpcs`` (canonical ids
    of every RPC called), ``downloads`` (media ids fetched by a client other than the page's own
    ``<video>``), ``pages``."""

    def __init__(self, variant: str = "plain") -> None:
        self.secret = secrets.token_bytes(32)
        self.sessions: dict[str, float] = {}  # cookie -> expiry (monotonic)
        self.tokens: dict[str, tuple[str, bool]] = {}  # reCAPTCHA token -> (session, used)
        self.workflows: dict[str, Workflow] = {}
        self.media: dict[str, Media] = {}
        self.uploads: dict[str, tuple[str, bytes]] = {}  # media id -> (name, bytes)
        self.submits: list[dict[str, Any]] = []
        self.rpcs: list[str] = []
        self.downloads: list[str] = []
        self.pages: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.reset(variant)
        self.app = Starlette(routes=[
            Route("/", self._home),
            Route("/fx/tools/flow", self._labs),
            Route("/fx/tools/flow/{rest:path}", self._labs),
            Route("/project/{pid}", self._project),
            Route("/u/{n:int}/project/{pid}", self._project),
            Route("/about", self._about),
            Route("/unavailable", self._unavailable),
            Route("/v3/signin/identifier", self._signin, methods=["GET", "POST"]),
            Route("/v3/signin/rejected", self._rejected),
            Route(RPC_PATH, self._batchexecute, methods=["POST"]),
            Route(UPLOAD_PATH, self._upload, methods=["POST"]),
            Route("/recaptcha/enterprise.js", self._recaptcha_js),
            Route("/recaptcha/enterprise/reload", self._mint, methods=["POST"]),
            Route("/video/{mid}", self._video),
            Route("/image/{mid}", self._poster),
            Route("/static/{name}", self._static),
        ])

    def reset(self, variant: str = "plain") -> None:
        """Controls back to their defaults; sessions and earlier generations stay."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.variant = variant
        # test-friendly timings; the real app's are in the comments
        self.delay = 0.3  # seconds a generation runs (real: about a minute)
        self.poll_interval = 0.15  # seconds between the page's status polls (real: ~5)
        self.url_delay: tuple[float, float] = (0.05, 0.15)  # done -> signed URL (real: 2-8 s)
        self.hop_delay: tuple[float, float] = (0.2, 0.4)  # 200 document -> /about (as real)
        self.token_lead = 0.12  # token minted this long before the submit POST (as real)
        self.upload_delay = 0.1  # seconds an upload takes (real: several)
        self.boot_delay = 0.1  # the app renders its composer this long after the document
        # seconds a pane or menu takes to scale in, as Material's do (real: ~0.15); what it
        # holds does not stand still meanwhile, so clicks on it wait (dialogs appear at once)
        self.overlay_animation = 0.0
        # False: the videos of one length and shape share their picture (only the identity box
        # differs), which keeps a benchmark's fake off the CPU
        self.distinct_videos = True
        self.credits = 10_000
        self.history = 6
        self.refuse_headless = False
        self.refusal = "redirect"  # how: "redirect" (to /v3/signin/rejected) or "403"
        self.signed_out_to = "about"
        self.accounts_base = ""  # "" = this origin; a test may route https://accounts.google.com
        self.unavailable = False
        self.auto_login = False
        self.promos = True
        self.cookie_bar = True
        self.drift: set[str] = set()

    @property
    def credits(self) -> int:
        return self._credits

    @credits.setter
    def credits(self, value: int) -> None:
        # True/False kept for older callers: plenty or none
        self._credits = (10_000 if value else 0) if isinstance(value, bool) else int(value)

    # sessions --------------------------------------------------------------------------------

    def new_session(self, ttl: float = 3600.0) -> str:
        sid = secrets.token_hex(16)
        self.sessions[sid] = time.monotonic() + ttl
        return sid

    def expire_all(self) -> None:
        """Every session dies server-side; browsers keep their (now useless) cookies."""
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
        return f"{self.url}/"

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await super().stop()

    # helpers ---------------------------------------------------------------------------------

    def _session(self, request: Request) -> str | None:
        sid = request.cookies.get(COOKIE)
        if sid and self.sessions.get(sid, 0) > time.monotonic():
            return sid
        return None

    def _at(self, sid: str) -> str:
        """The page's CSRF value (``at``), bound to the session as Google's is."""
        mac = hmac.new(self.secret, f"at:{sid}".encode(), hashlib.sha256).hexdigest()
        return f"AJvLN6{mac[:26]}:{int(time.time() * 1000)}"

    def _at_ok(self, sid: str, at: str) -> bool:
        return at.split(":", 1)[0] == self._at(sid).split(":", 1)[0]

    def _headless(self, request: Request) -> bool:
        ua = request.headers.get("user-agent", "")
        brands = request.headers.get("sec-ch-ua", "")
        return bool(_HEADLESS.search(ua) or _HEADLESS.search(brands))

    def _sign(self, kind: str, mid: str) -> str:
        expires = int(time.time()) + 3600
        sig = hmac.new(self.secret, f"{kind}/{mid}:{expires}".encode(),
                       hashlib.sha256).hexdigest()
        return f"{self.url}/{kind}/{mid}?Expires={expires}&Signature={sig}"

    def _signature_ok(self, kind: str, mid: str, request: Request) -> bool:
        try:
            expires = int(request.query_params.get("Expires", "0"))
        except ValueError:
            return False
        want = hmac.new(self.secret, f"{kind}/{mid}:{expires}".encode(),
                        hashlib.sha256).hexdigest()
        return expires > time.time() and hmac.compare_digest(
            want, request.query_params.get("Signature", ""))

    def _html(self, name: str, config: dict[str, Any]) -> HTMLResponse:
        blob = json.dumps(config).replace("</", "<\\/")
        html = (STATIC / name).read_text().replace("__CONFIG__", blob)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _app_config(self, request: Request, route: str, **extra: Any) -> dict[str, Any]:
        variant = dict(VARIANTS[self.variant])
        return {"route": route, "variant": variant, "build": secrets.token_hex(3),
                "hopDelay": random.uniform(*self.hop_delay), "bootDelay": self.boot_delay,
                "promos": self.promos, "cookieBar": self.cookie_bar,
                "refuseHeadless": self.refuse_headless, "drift": sorted(self.drift),
                "siteKey": SITE_KEY, "tokenLead": self.token_lead,
                "pollInterval": self.poll_interval, "overlayAnimation": self.overlay_animation,
                "rpcNames": {v: k for k, v in RPC_ALIASES.items()} if "rpc" in self.drift else {},
                **extra}

    def _hop_target(self, request: Request) -> str:
        if self.signed_out_to == "accounts":
            cont = quote(str(request.url), safe="")
            return f"{self.accounts_base}/v3/signin/identifier?continue={cont}"
        return "/about"

    def _refused(self, request: Request) -> Response | None:
        if self.refuse_headless and self._headless(request):
            if self.refusal == "403":
                return HTMLResponse("<!doctype html><title>Error 403</title><h1>403</h1>"
                                    "<p>That's an error. Your client does not have permission."
                                    "</p>", status_code=403)
            return RedirectResponse("/v3/signin/rejected", 302)
        return None

    # pages -----------------------------------------------------------------------------------

    async def _labs(self, request: Request) -> Response:
        """The old labs address answers 308 to the new app, as the real one does."""
        rest = request.path_params.get("rest", "")
        return RedirectResponse(f"/{rest}" if rest else "/", 308)

    async def _home(self, request: Request) -> Response:
        self.pages.append("home")
        refused = self._refused(request)
        if refused:
            return refused
        sid = self._session(request)
        if sid is None:
            return self._html("app.html", self._app_config(request, "shell",
                                                           hop=self._hop_target(request)))
        if self.unavailable:
            return self._html("app.html", self._app_config(request, "shell", hop="/unavailable"))
        projects = sorted({w.project for w in self.workflows.values() if w.session})[-3:]
        return self._html("app.html", self._app_config(request, "home", projects=projects,
                                                       balance=self.credits))

    async def _project(self, request: Request) -> Response:
        self.pages.append("project")
        refused = self._refused(request)
        if refused:
            return refused
        sid = self._session(request)
        if sid is None:
            return self._html("app.html", self._app_config(request, "shell",
                                                           hop=self._hop_target(request)))
        if self.unavailable:
            return self._html("app.html", self._app_config(request, "shell", hop="/unavailable"))
        pid = request.path_params["pid"]
        return self._html("app.html", self._app_config(
            request, "project", project=pid, balance=self.credits, models=MODELS,
            history=self._history(), at=self._at(sid), sid=secrets.token_hex(8),
            bl="boq_labs-tools-aisandbox-frontend_20261201.07_p0"))

    def _history(self) -> list[dict[str, Any]]:
        """Earlier generations of the account, newest first: a driver that takes "the first
        video on the page" takes one of these."""
        if not self.history:
            return []
        out: list[dict[str, Any]] = []
        for wf in reversed(list(self.workflows.values())):
            for mid in wf.media:
                m = self.media[mid]
                state = self._record(wf, m)
                if state[1] == DONE and m.video is not None:
                    out.append({"mid": mid, "state": "done", "url": self._sign("video", mid),
                                "poster": self._sign("image", mid)})
                elif state[1] == FAILED:
                    out.append({"mid": mid, "state": "failed", "reason": state[3]})
                if len(out) >= self.history:
                    return out
        return out

    async def _about(self, request: Request) -> Response:
        self.pages.append("about")
        return self._html("about.html", {"autoLogin": self.auto_login,
                                         "signin": f"{self.accounts_base}/v3/signin/identifier"
                                                   "?continue=%2F"})

    async def _unavailable(self, request: Request) -> Response:
        self.pages.append("unavailable")
        return self._html("notice.html", {"kind": "unavailable"})

    async def _rejected(self, request: Request) -> Response:
        self.pages.append("rejected")
        return self._html("notice.html", {"kind": "rejected"})

    async def _signin(self, request: Request) -> Response:
        """Google's sign-in page, reduced: submitting it signs in (the person at the keyboard);
        ``auto_login`` submits it by itself."""
        self.pages.append("signin")
        target = request.query_params.get("continue", "/")
        if not target.startswith("/"):
            target = "/"
        if request.method == "POST":
            resp = RedirectResponse(target, 303)
            resp.set_cookie(COOKIE, self.new_session(), httponly=True, samesite="lax")
            return resp
        return self._html("signin.html", {"autoLogin": self.auto_login,
                                          "action": f"/v3/signin/identifier?continue="
                                                    f"{quote(target, safe='')}"})

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if "/" in name or not (STATIC / name).is_file() or not name.endswith(".js"):
            return Response(status_code=404)
        return Response((STATIC / name).read_bytes(), media_type="application/javascript",
                        headers={"Cache-Control": "no-store"})

    async def _recaptcha_js(self, request: Request) -> Response:
        return Response((STATIC / "recaptcha.js").read_bytes(),
                        media_type="application/javascript")

    async def _mint(self, request: Request) -> Response:
        """A single-use token for this session, as reCAPTCHA Enterprise mints per action."""
        sid = self._session(request)
        if sid is None or (self.refuse_headless and self._headless(request)):
            return Response(status_code=403)
        token = "03AFcWeA" + secrets.token_urlsafe(48)
        self.tokens[token] = (sid, False)
        return Response(")]}'\n" + json.dumps(["rresp", token, None, 120]),
                        media_type="application/json")

    # batchexecute ----------------------------------------------------------------------------

    async def _batchexecute(self, request: Request) -> Response:
        sid = self._session(request)
        if sid is None:
            return Response(status_code=401)
        if self.refuse_headless and self._headless(request):
            return Response(status_code=403)
        form = parse_qs((await request.body()).decode())
        if not self._at_ok(sid, (form.get("at") or [""])[0]):
            return Response(status_code=400)
        try:
            calls = json.loads((form.get("f.req") or ["[]"])[0])[0]
        except (ValueError, IndexError, TypeError):
            return Response(status_code=400)
        entries: list[list[Any]] = []
        for call in calls:
            called, args = call[0], json.loads(call[1]) if call[1] else None
            rpc = RPC_ALIASES.get(called, called)
            self.rpcs.append(rpc)
            if rpc in SUBMIT_RPCS:
                entries.append(await self._submit(called, rpc, args, sid))
            elif rpc == STATUS_RPC:
                entries.append(_ok(called, self._statuses(args)))
            elif rpc == URL_RPC:
                entries.append(_ok(called, self._urls(args)))
            else:
                entries.append(_error(called, 12, "unimplemented", None))
        return Response(_envelope(entries), media_type="application/json; charset=utf-8")

    async def _submit(self, called: str, rpc: str, args: Any, sid: str) -> list[Any]:
        # [project, prompt, [model, aspect, resolution, duration, count], [start, end]|null,
        #  token, client request id]
        project, prompt, (model, aspect, resolution, duration, count), frames, token = args[:5]
        seen = self.tokens.get(token)
        record: dict[str, Any] = {
            "rpc": rpc, "prompt": prompt, "project": project, "token": token,
            "settings": {"model": model, "aspect": aspect, "resolution": resolution,
                         "duration": duration, "count": count},
            "frames": {slot: self._frame_sha(mid) for slot, mid in
                       zip(("start", "end"), frames or [None, None], strict=True)},
            "workflow": None, "error": None}
        self.submits.append(record)
        outcome = next((k for k in OUTCOMES if f"[{k}]" in prompt), "ok")
        if seen is None or seen[0] != sid or seen[1]:
            # a replayed, foreign or missing token is what automation that calls the RPC
            # itself produces; Google answers it as unusual activity
            outcome = "unusual"
        else:
            self.tokens[token] = (sid, True)
        cost = MODELS.get(model, {"cost": 20})["cost"] * int(count)
        if outcome == "ok" and cost > self.credits:
            record["error"] = "PUBLIC_ERROR_INSUFFICIENT_CREDITS"
            return _error(called, 9, "Insufficient credits", "PUBLIC_ERROR_INSUFFICIENT_CREDITS")
        if outcome in OUTCOMES and OUTCOMES[outcome][0] == "submit":
            _where, reason, code, message = OUTCOMES[outcome]
            record["error"] = reason
            return _error(called, code, message, reason)
        m = _SLOW.search(prompt)
        wf = Workflow(id=str(uuid.uuid4()), session=sid, project=project, prompt=prompt, rpc=rpc,
                      settings=record["settings"], frames=record["frames"], media=[],
                      submission=len(self.submits), created=time.monotonic(),
                      delay=float(m.group(1)) if m else self.delay, outcome=outcome, cost=cost)
        for sample in range(int(count)):
            mid = str(uuid.uuid4())
            wf.media.append(mid)
            self.media[mid] = Media(mid, wf.id, sample)
        self.workflows[wf.id] = wf
        self.credits = self.credits - cost
        record["workflow"] = wf.id
        return _ok(called, [wf.id, [[mid, i] for i, mid in enumerate(wf.media)], SUBMITTED])

    def _frame_sha(self, mid: str | None) -> str | None:
        if not mid or mid not in self.uploads:
            return None
        return hashlib.sha256(self.uploads[mid][1]).hexdigest()

    def _record(self, wf: Workflow, m: Media) -> list[Any]:
        """[media id, status, percent, reason] for a record, as of now."""
        t = time.monotonic() - wf.created
        if wf.outcome in OUTCOMES and t >= wf.delay * 0.6:
            if not wf.refunded:
                wf.refunded = True  # "You have not been charged for this generation."
                self.credits = self.credits + wf.cost
            return [m.id, FAILED, 0, OUTCOMES[wf.outcome][1]]
        if t < min(0.2 * wf.delay, 0.3):
            return [m.id, SUBMITTED, 0, None]
        if t < wf.delay:
            return [m.id, RUNNING, min(99, int(100 * t / wf.delay)), None]
        if m.done_at is None:
            m.done_at = time.monotonic()
            m.url_at = m.done_at + random.uniform(*self.url_delay)
            self._spawn(self._render(wf, m))
        return [m.id, DONE, 100, None]

    async def _render(self, wf: Workflow, m: Media) -> None:
        s = wf.settings
        identity = {
            "backend": "flow", "generation": m.id, "workflow": wf.id,
            "submission": wf.submission, "sample": m.sample, "rpc": wf.rpc,
            "mode": "frames" if any(wf.frames.values()) else "text",
            "prompt": wf.prompt, "prompt_sha256": hashlib.sha256(wf.prompt.encode()).hexdigest(),
            "first_frame_sha256": wf.frames.get("start"),
            "last_frame_sha256": wf.frames.get("end"),
            "model": s["model"], "aspect": s["aspect"], "resolution": s["resolution"],
            "duration": s["duration"], "count": s["count"]}
        video = await mp4.render(identity, duration=float(s["duration"]),
                                 aspect_ratio=str(s["aspect"]), distinct=self.distinct_videos)
        m.poster = await asyncio.to_thread(_poster_jpeg, identity, str(s["aspect"]))
        m.video = video

    def _statuses(self, args: Any) -> list[Any]:
        # args: [[workflow id, ...]] -> [[workflow id, status, [[media, status, pct, reason]]]]
        out = []
        for wid in (args or [[]])[0]:
            wf = self.workflows.get(wid)
            if wf is None:
                continue
            records = [self._record(wf, self.media[mid]) for mid in wf.media]
            overall = min((r[1] for r in records), key=[FAILED, SUBMITTED, RUNNING, DONE].index)
            out.append([wf.id, overall, records])
        return out

    def _urls(self, args: Any) -> list[Any]:
        # args: [[media id, ...]] -> [[media id, video url, poster url], ...] once ready
        out = []
        now = time.monotonic()
        for mid in (args or [[]])[0]:
            m = self.media.get(mid)
            if m is None or m.video is None or m.url_at is None or now < m.url_at:
                continue
            urls = [self._sign("video", mid), self._sign("image", mid)]
            # drift {"urls"}: a build that lists the media id last
            out.append([*urls, mid] if "urls" in self.drift else [mid, *urls])
        return out

    async def _upload(self, request: Request) -> Response:
        if self._session(request) is None:
            return Response(status_code=401)
        form = await request.form(max_part_size=32 * 2**20)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return Response(status_code=400)
        data = await upload.read()
        await asyncio.sleep(self.upload_delay)
        mid = str(uuid.uuid4())
        self.uploads[mid] = (upload.filename or "upload", data)
        return JSONResponse({"mediaId": mid, "name": upload.filename,
                             "sha256": hashlib.sha256(data).hexdigest()})

    # content ---------------------------------------------------------------------------------

    def _content(self, kind: str, request: Request) -> Media | Response:
        mid = request.path_params["mid"]
        if not _UUID.match(mid):
            return Response(status_code=404)
        # the content host needs the account's cookie: a signed URL alone gets 403
        if self._session(request) is None or not self._signature_ok(kind, mid, request):
            return Response(status_code=403)
        m = self.media.get(mid)
        if m is None or m.video is None:
            return Response(status_code=404)
        return m

    async def _video(self, request: Request) -> Response:
        m = self._content("video", request)
        if isinstance(m, Response):
            return m
        assert m.video is not None
        if request.headers.get("sec-fetch-dest") != "video":
            self.downloads.append(m.id)
        return Response(m.video, media_type="video/mp4")

    async def _poster(self, request: Request) -> Response:
        m = self._content("image", request)
        if isinstance(m, Response):
            return m
        return Response(m.poster or b"", media_type="image/jpeg")


def _ok(rpc: str, payload: Any) -> list[Any]:
    return ["wrb.fr", rpc, json.dumps(payload, separators=(",", ":")), None, None, None,
            "generic"]


def _error(rpc: str, code: int, message: str, reason: str | None) -> list[Any]:
    details = [["type.googleapis.com/google.rpc.ErrorInfo",
                [reason, "aisandbox-pa.googleapis.com", {}]]] if reason else []
    return ["wrb.fr", rpc, None, None, None, [code, message, details], "generic"]


def _envelope(entries: list[list[Any]]) -> str:
    """Google's batchexecute framing: an XSSI guard, then length-prefixed JSON chunks."""
    first = json.dumps([*entries, ["di", random.randint(20, 90)],
                        ["af.httprm", random.randint(20, 90), str(random.getrandbits(60)), 7]],
                       separators=(",", ":"))
    second = json.dumps([["e", 4, None, None, len(first) + 1]], separators=(",", ":"))
    return f")]}}'\n\n{len(first) + 1}\n{first}\n{len(second) + 1}\n{second}\n"


def _poster_jpeg(identity: dict[str, Any], aspect: str) -> bytes:
    rgb, _tone = mp4.look(identity)
    buf = io.BytesIO()
    Image.new("RGB", mp4.SIZES.get(aspect, mp4.SIZES["16:9"]), rgb).save(buf, "JPEG",
                                                                          quality=80)
    return buf.getvalue()
