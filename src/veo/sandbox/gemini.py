"""A fake Gemini Developer API for Veo, speaking the real wire protocol of google-genai 2.x
(research/veo-api.md §2), so the real client is exercised end to end.

Behaviour is steered per key and per prompt from Python (tests, benchmarks) or over
``/_fake/*`` (other processes): invalid or blocked keys, a request quota per key per window,
generation delay, forced operation errors and safety filtering. Prompt markers do the same
without setup: ``[safety]``, ``[fail]`` (INTERNAL, retryable), ``[fail-arg]`` (INVALID_ARGUMENT),
``[slow:N]`` (N seconds). Every request is recorded.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import time
import uuid
from collections import defaultdict, deque
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from veo.sandbox import mp4
from veo.sandbox.serving import LoopbackServer

BAD_KEY = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                     "status": "INVALID_ARGUMENT", "details": [{
                         "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                         "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                         "metadata": {"service": "generativelanguage.googleapis.com"}}]}}
QUOTA: dict[str, Any] = {"error": {
                   "code": 429, "message": "You exceeded your current quota, please check your "
                   "plan and billing details.", "status": "RESOURCE_EXHAUSTED", "details": [{
                       "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                       "violations": [{"quotaMetric": "generativelanguage.googleapis.com/"
                                       "predict_long_running_requests"}]}]}}
SUPPORTED_PARAMS = {
    "veo-2.0-generate-001": {"sampleCount", "durationSeconds", "aspectRatio", "personGeneration",
                             "negativePrompt", "enhancePrompt"},
}
ALL_PARAMS = {"sampleCount", "durationSeconds", "aspectRatio", "resolution", "personGeneration",
              "negativePrompt", "enhancePrompt"}
_SLOW = re.compile(r"\[slow:([\d.]+)\]")


def _forbidden(key: str) -> dict[str, Any]:
    # the real body names the key (research §6): the service must redact it from logs
    return {"error": {"code": 403, "message": f"Consumer 'api_key:{key}' has been suspended.",
                      "status": "PERMISSION_DENIED"}}


@dataclasses.dataclass
class KeyRule:
    invalid: bool = False
    blocked: bool = False
    quota: int | None = None  # requests per window (create calls only, as Veo's RPM)
    window: float = 60.0


@dataclasses.dataclass
class Operation:
    name: str
    key: str
    model: str
    instance: dict[str, Any]
    parameters: dict[str, Any]
    created: float
    ready_at: float
    outcome: str = "ok"  # ok | safety | fail | fail-arg
    files: list[str] = dataclasses.field(default_factory=list)


class FakeGemini(LoopbackServer):
    def __init__(self) -> None:
        self.rules: dict[str, KeyRule] = {}
        self.delay = 0.0
        self.redirect_downloads = False
        self.operations: dict[str, Operation] = {}
        self.files: dict[str, bytes] = {}
        self.requests: list[dict[str, Any]] = []
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self.app = Starlette(routes=[
            Route("/v1beta/{path:path}", self._dispatch, methods=["GET", "POST"]),
            Route("/_files/{fid}", self._raw_file),
            Route("/_fake/keys", self._ctl_keys, methods=["POST"]),
            Route("/_fake/config", self._ctl_config, methods=["POST"]),
            Route("/_fake/requests", self._ctl_requests),
        ])

    # control
    def key(self, key: str, **rule: Any) -> None:
        self.rules[key] = dataclasses.replace(self.rules.get(key, KeyRule()), **rule)

    def creates(self, key: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["kind"] == "create"
                and (key is None or r["key"] == key)]

    # protocol
    def _key_error(self, key: str, *, counts: bool) -> Response | None:
        rule = self.rules.get(key, KeyRule())
        if not key:
            return JSONResponse({"error": {"code": 403, "message": "Method doesn't allow "
                                 "unregistered callers.", "status": "PERMISSION_DENIED"}}, 403)
        if rule.invalid:
            return JSONResponse(BAD_KEY, 400)
        if rule.blocked:
            return JSONResponse(_forbidden(key), 403)
        if counts and rule.quota is not None:
            now = time.monotonic()
            hits = self._hits[key]
            while hits and hits[0] <= now - rule.window:
                hits.popleft()
            if len(hits) >= rule.quota:
                wait = max(0.0, hits[0] + rule.window - now) if hits else rule.window
                details: list[Any] = list(QUOTA["error"]["details"])
                body = {"error": {**QUOTA["error"], "details": [
                    *details,
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                     "retryDelay": f"{wait:.3f}s"}]}}
                return JSONResponse(body, 429)
            hits.append(now)
        return None

    async def _dispatch(self, request: Request) -> Response:
        path = request.path_params["path"]
        key = request.headers.get("x-goog-api-key", "")
        if request.method == "POST" and path.endswith(":predictLongRunning"):
            return await self._create(request, path.removeprefix("models/")
                                      .removesuffix(":predictLongRunning"), key)
        if request.method == "GET" and "/operations/" in path:
            return self._poll(path, key)
        if request.method == "GET" and path.startswith("files/") and path.endswith(":download"):
            return self._download(path.removeprefix("files/").removesuffix(":download"), key)
        if request.method == "GET" and path.startswith("models/"):
            self.requests.append({"kind": "get_model", "key": key, "path": path})
            err = self._key_error(key, counts=False)
            if err is not None:
                return err
            name = path.removeprefix("models/")
            return JSONResponse({"name": f"models/{name}", "displayName": name,
                                 "supportedGenerationMethods": ["predictLongRunning"]})
        return JSONResponse({"error": {"code": 404, "message": f"no route {path}",
                                       "status": "NOT_FOUND"}}, 404)

    async def _create(self, request: Request, model: str, key: str) -> Response:
        body = await request.json()
        instance = (body.get("instances") or [{}])[0]
        parameters = body.get("parameters") or {}
        self.requests.append({"kind": "create", "key": key, "model": model, "body": body,
                              "at": time.monotonic()})
        err = self._key_error(key, counts=True)
        if err is not None:
            return err
        allowed = SUPPORTED_PARAMS.get(model, ALL_PARAMS)
        for name in parameters:
            if name not in allowed:
                return JSONResponse({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                     "message": f"`{name}` isn't supported by this model. "
                                     "Please remove it or refer to the Gemini API documentation "
                                     "for supported usage."}}, 400)
        prompt = str(instance.get("prompt", ""))
        delay = self.delay
        m = _SLOW.search(prompt)
        if m:
            delay = float(m.group(1))
        outcome = ("safety" if "[safety]" in prompt else "fail-arg" if "[fail-arg]" in prompt
                   else "fail" if "[fail]" in prompt else "ok")
        name = f"models/{model}/operations/{uuid.uuid4().hex[:16]}"
        now = time.monotonic()
        self.operations[name] = Operation(name=name, key=key, model=model, instance=instance,
                                          parameters=parameters, created=now,
                                          ready_at=now + delay, outcome=outcome)
        return JSONResponse({"name": name})

    def _poll(self, path: str, key: str) -> Response:
        self.requests.append({"kind": "poll", "key": key, "name": path})
        err = self._key_error(key, counts=False)
        if err is not None:
            return err
        op = self.operations.get(path)
        if op is None:
            return JSONResponse({"error": {"code": 404, "message": "Operation not found",
                                           "status": "NOT_FOUND"}}, 404)
        if time.monotonic() < op.ready_at:
            return JSONResponse({"name": op.name, "done": False})
        if op.outcome == "fail":
            return JSONResponse({"name": op.name, "done": True,
                                 "error": {"code": 13, "message": "Internal error while "
                                           "generating the video."}})
        if op.outcome == "fail-arg":
            return JSONResponse({"name": op.name, "done": True,
                                 "error": {"code": 3, "message": "The prompt could not be "
                                           "processed."}})
        base = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta."
                         "PredictLongRunningResponse"}
        if op.outcome == "safety":
            return JSONResponse({"name": op.name, "done": True, "response": {
                **base, "generateVideoResponse": {
                    "raiMediaFilteredCount": 1,
                    "raiMediaFilteredReasons": ["The video was filtered by our safety "
                                                "policies. You have not been charged."]}}})
        if not op.files:
            count = int(op.parameters.get("sampleCount", 1))
            for sample in range(count):
                fid = uuid.uuid4().hex[:20]
                self.files[fid] = mp4.make(self.identity(op, sample))
                op.files.append(fid)
        samples = [{"video": {"uri": f"https://generativelanguage.googleapis.com/v1beta/files/"
                              f"{fid}:download?alt=media"}} for fid in op.files]
        return JSONResponse({"name": op.name, "done": True, "response": {
            **base, "generateVideoResponse": {"generatedSamples": samples}}})

    @staticmethod
    def identity(op: Operation, sample: int) -> dict[str, Any]:
        def digest(image: dict[str, Any] | None) -> str | None:
            if not image:
                return None
            return hashlib.sha256(base64.b64decode(image["bytesBase64Encoded"])).hexdigest()

        return {"backend": "api", "operation": op.name, "model": op.model, "sample": sample,
                "prompt": op.instance.get("prompt"),
                "prompt_sha256": hashlib.sha256(str(op.instance.get("prompt", ""))
                                                .encode()).hexdigest(),
                "first_frame_sha256": digest(op.instance.get("image")),
                "last_frame_sha256": digest(op.instance.get("lastFrame")),
                "parameters": op.parameters}

    def _download(self, fid: str, key: str) -> Response:
        self.requests.append({"kind": "download", "key": key, "file": fid})
        err = self._key_error(key, counts=False)
        if err is not None:
            return err
        if fid not in self.files:
            return JSONResponse({"error": {"code": 404, "message": "File not found",
                                           "status": "NOT_FOUND"}}, 404)
        if self.redirect_downloads:
            return RedirectResponse(f"/_files/{fid}", 302)
        return Response(self.files[fid], media_type="video/mp4")

    async def _raw_file(self, request: Request) -> Response:
        data = self.files.get(request.path_params["fid"])
        return Response(data, media_type="video/mp4") if data else Response(status_code=404)

    async def _ctl_keys(self, request: Request) -> Response:
        body = await request.json()
        for key, rule in body.items():
            self.key(key, **rule)
        return JSONResponse({"ok": True})

    async def _ctl_config(self, request: Request) -> Response:
        body = await request.json()
        self.delay = float(body.get("delay", self.delay))
        self.redirect_downloads = bool(body.get("redirect_downloads", self.redirect_downloads))
        return JSONResponse({"ok": True})

    async def _ctl_requests(self, request: Request) -> Response:
        return JSONResponse([{k: v for k, v in r.items() if k != "body"} for r in self.requests])


def main() -> None:
    """Run the fake on its own: ``python -m veo.sandbox.gemini --port 8010 --delay 20``."""
    import argparse

    parser = argparse.ArgumentParser(description="fake Gemini API for Veo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeGemini()
    fake.delay = args.delay
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
