"""``GET /api/openapi.json``: the OpenAPI 3.1 document, the whole contract of the HTTP API.

The request and response schemas are msgspec's, from the types in ``veo.wire`` and ``veo.jobs``:
their constraints (lengths, patterns, ranges) are the ones the server's decoder enforces, so
the two cannot drift. What a type cannot carry is added here and enforced by the route named
beside it: the rules between fields of a job request, the rules of each model (from the
catalog this deployment runs with, so the document is built per process and per day, as models
retire), path, query and header parameters, every status a route can answer, and the links
from created resources to the routes that use their ids.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from veo import catalog as catalogmod
from veo import jobs as core
from veo import wire
from veo.catalog import Capabilities, Catalog
from veo.web.jobs import CURSOR, IDEMPOTENCY_KEY, MAX_JOB_BODY, MAX_PREFER_WAIT, MAX_SMALL_BODY

_BODY_TYPES: list[Any] = [
    wire.JobRequest, wire.JobOut, wire.JobList, wire.UploadOut, wire.KeyIn,
    wire.KeyOut, wire.KeyList, wire.UserIn, wire.UserOut, wire.Me,
    wire.Health, wire.QueueStatus, wire.FlowAuthStatus, wire.RetryFailed,
    wire.ErrorBody, wire.SelectIn, wire.RedoIn, wire.FinalSpec, wire.ModelList, wire.TokenOut,
    wire.Revoked, wire.LinkOut, wire.StorageState,
]

Schema = dict[str, Any]


def _ref(t: Any) -> Schema:
    return {"$ref": f"#/components/schemas/{t.__name__}"}


def _json(t: Any, desc: str = "OK", headers: dict[str, Any] | None = None) -> Schema:
    out: Schema = {"description": desc, "content": {"application/json": {"schema": _ref(t)}}}
    if headers:
        out["headers"] = headers
    return out


def _header(desc: str, schema: Schema | None = None, required: bool = True) -> Schema:
    return {"description": desc, "required": required, "schema": schema or {"type": "string"}}


_ERROR_TEXT = {
    "400": "Not JSON, a malformed multipart body, or a bad Content-Length",
    "401": "No bearer token, or one that is unknown or revoked",
    "403": "The route is for admins",
    "404": "No such resource of the caller's (others' ids answer 404 too)",
    "409": "The resource's state does not allow it now",
    "413": "The body is larger than the route takes (refused before it is read)",
    "415": "The upload is not a PNG, JPEG or WebP image",
    "422": "A field breaks a rule of this document; the error names it (`details.field`)",
    "429": "Too many open event streams for this user",
}


def _err(code: str) -> Schema:
    headers = ({"WWW-Authenticate": _header("`Bearer`", {"const": "Bearer"})}
               if code == "401" else None)
    return _json(wire.ErrorBody, _ERROR_TEXT[code], headers)


_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(op_id: str, summary: str, responses: dict[str, Any], *, body: Schema | None = None,
        auth: bool = True, params: list[Schema] | None = None,
        body_media: str = "application/json", body_required: bool = True,
        errors: tuple[str, ...] = (), description: str | None = None,
        encoding: Schema | None = None) -> Schema:
    op: Schema = {"operationId": op_id, "summary": summary,
                  "responses": {**responses, **{c: _err(c) for c in errors}}}
    if description:
        op["description"] = description
    if auth:
        op["security"] = _AUTH
        assert "401" in errors, op_id
    if body is not None:
        media: Schema = {"schema": body}
        if encoding:
            media["encoding"] = encoding
        op["requestBody"] = {"required": body_required, "content": {body_media: media}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, pattern: str, desc: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": desc,
            "schema": {"type": "string", "pattern": f"^{pattern}$"}}


def _query(name: str, schema: Schema, desc: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": desc,
            "schema": schema}


_JOB = _path_param("job_id", wire.JOB_ID, "a job's id; another shape names nothing (404)")
_OUTPUT = _path_param("output_id", wire.OUTPUT_ID, "an output of the job")
_USER = _path_param("user_id", wire.USER_ID, "a user's id")
_KEY = _path_param("key_id", wire.KEY_ID, "one of the caller's keys")
_TOKEN = _path_param("token", r"[A-Za-z0-9_-]+\.[0-9]{1,12}\.[A-Za-z0-9_-]{43}",
                     "a link token from a `link` route")
_INDEX: Schema = {"name": "index", "in": "path", "required": True,
                  "description": "a clip's index, from 0",
                  "schema": {"type": "integer", "minimum": 0, "maximum": core.MAX_CLIPS - 1}}
_ACCOUNT = _query("account", {"type": "string", "pattern": f"^{wire.ACCOUNT}$"},
                  "a Flow account (`FLOW_ACCOUNT` when absent)")

_BINARY: Schema = {"type": "string", "format": "binary"}
_REDIRECT: Schema = {"description": "A redirect to a short-lived presigned URL (S3 storage)",
                     "headers": {"Location": _header("the presigned URL")}}
_VIDEO: Schema = {
    "200": {"description": "The video (local storage; `Range` is honoured)",
            "content": {"video/mp4": {"schema": _BINARY}}},
    "206": {"description": "Part of the video, for a `Range` request",
            "content": {"video/mp4": {"schema": _BINARY}}},
    "302": _REDIRECT}
_IMAGE: Schema = {
    "200": {"description": "A JPEG frame (local storage)",
            "content": {"image/jpeg": {"schema": _BINARY}}},
    "206": {"description": "Part of the frame, for a `Range` request",
            "content": {"image/jpeg": {"schema": _BINARY}}},
    "302": _REDIRECT}
# one event of the stream (OpenAPI 3.1 describes each event with `schema`)
_EVENT: Schema = {"oneOf": [
    {"type": "object", "required": ["event", "data"], "properties": {
        "event": {"const": "job"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": _ref(wire.JobOut)}}},
    {"type": "object", "required": ["event", "data"], "properties": {
        "event": {"const": "deleted"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"type": "object", "maxProperties": 0}}}}]}
_NO_CONTENT = {"204": {"description": "Deleted"}}
_JOB_HEADERS = {"Location": _header("the job's URL, `/api/jobs/{id}`")}


# ---- the rules of a job request that its type cannot carry ----------------------------------

def _nullable_enum(values: list[Any], default: Any) -> tuple[Schema, bool]:
    """A field the server defaults to ``default`` when null or absent: (schema, required)."""
    if default in values:
        return {"enum": [*values, None]}, False
    return {"enum": values}, True  # the default is not allowed: the field must be given


def _capabilities(caps: Capabilities) -> tuple[Schema, list[str]]:
    """The properties a model on one backend restricts, and those it needs given."""
    props: Schema = {}
    required: list[str] = []
    for name, values, default in (("resolution", caps.resolutions, "720p"),
                                  ("aspect_ratio", caps.aspect_ratios, "16:9"),
                                  ("duration_seconds", caps.durations, caps.default_duration)):
        props[name], needed = _nullable_enum(list(values), default)
        if needed:
            required.append(name)
    null: Schema = {"type": "null"}
    if not caps.negative_prompt:
        props["negative_prompt"] = null
    if not caps.enhance_prompt:
        props["enhance_prompt"] = null
    props["person_generation"] = ({"enum": [*caps.person_generation, None]}
                                  if caps.person_generation else null)
    clip: Schema = {}
    if not caps.first_frame:
        clip["first_frame"] = null
    if not caps.last_frame:
        clip["last_frame"] = null
    if caps.reference_images < core.MAX_REFERENCE_IMAGES:
        clip["reference_images"] = {"maxItems": caps.reference_images}
    if not caps.extension:
        clip["extend_from"] = null
    if clip:
        props["clips"] = {"items": {"properties": clip}}
    return props, required


def _variants(catalog: Catalog, default_model: str, flow_enabled: bool,
              today: date) -> list[Schema]:
    """One schema per (model, backend) this deployment serves: the model's names, the
    ``backend`` values that reach that backend, and what the model accepts there."""
    out: list[Schema] = []
    for m in sorted(catalog, key=lambda m: m.id):
        if m.retired(today):
            continue
        served = [b for b in ("api", "flow") if b in m.backends
                  and (b == "api" or flow_enabled)]
        # `auto` goes to api for a caller with a usable key, else to Flow (jobs.choose_backend)
        auto = "api" if "api" in served else "flow" if "flow" in served else None
        for backend in served:
            props, required = _capabilities(m.on(backend))
            names: list[Any] = [m.id, *m.aliases]
            if m.id == default_model:
                names.append(None)  # no model: the default
            else:
                required.append("model")
            props["model"] = {"enum": names}
            props["backend"] = {"enum": [backend, "auto"] if auto == backend else [backend]}
            if auto != backend:
                required.append("backend")
            if not m.on(backend).first_frame:
                # with `chain` every clip after the first starts from a frame
                props["continuity"] = {"const": "none"}
            variant: Schema = {"title": f"{m.id} on {backend}", "properties": props}
            if required:
                variant["required"] = sorted(required)
            out.append(variant)
    return out


_LAST_NEEDS_FIRST: Schema = {"anyOf": [
    {"properties": {"last_frame": {"type": "null"}}},
    {"required": ["first_frame"], "properties": {"first_frame": {"type": "string"}}}]}


def _job_rules(catalog: Catalog, default_model: str, flow_enabled: bool,
               today: date) -> list[Schema]:
    """The rules ``jobs.validate`` and ``jobs.check_capabilities`` apply beyond the type."""
    return [
        {"title": "prompt or clips", "oneOf": [
            {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
            {"required": ["clips"], "properties": {"clips": {"type": "array"}}}]},
        {"title": "continuity", "anyOf": [
            {"properties": {"continuity": {"const": "none"},
                            "clips": {"items": _LAST_NEEDS_FIRST}}},
            # with `chain`, clips after the first start from the previous clip's last frame:
            # no first frame or extension of their own, and a last frame alone is fine
            {"required": ["continuity"],
             "properties": {"continuity": {"const": "chain"},
                            "clips": {"prefixItems": [_LAST_NEEDS_FIRST],
                                      "items": {"properties": {
                                          "first_frame": {"type": "null"},
                                          "extend_from": {"type": "null"}}}}}}]},
        {"title": "model and backend", "anyOf": _variants(catalog, default_model, flow_enabled,
                                                          today)},
    ]


_JOB_DESCRIPTION = f"""\
Creates a job and queues it. Everything this document states about the body is checked
before anything is queued; a breach is a 422 naming the field (`error.details.field`).

The body's schema carries the rules of the models this deployment serves (`GET /api/models`):
each `model` (an id or alias; absent means the default) with each `backend` that runs it, and
the resolutions, durations, aspect ratios, frames, reference images, extension and prompt
options it takes there. `backend: "auto"` is stated as the API backend wherever the model runs
there, which is where it goes for a caller with a usable Gemini key; a caller without one is
routed to Flow, whose rules then apply (or, with Flow off, refused with 422 `no_api_key`).

What depends on state rather than on the request: an upload or output id that names nothing
of the caller's is a 404; `api` without a usable key is a 422 (`no_api_key`); an extension of
a video already at the model's longest is a 422; a `webhook_url` whose host does not resolve
(or resolves to a non-public address, unless the deployment allows it) is a 422.

`Idempotency-Key`: a second request with the same key and body answers 200 with the first
job (`Idempotent-Replayed: true`); with another body, 409. `Prefer: wait=N` (N seconds, at
most {MAX_PREFER_WAIT}) holds the response until the job ends or N seconds pass, then answers
with the job as it is then (`Preference-Applied: wait=N`); `Location` names the job either
way. The body may be at most {MAX_JOB_BODY} bytes."""


def _components(catalog: Catalog, default_model: str, flow_enabled: bool,
                today: date) -> Schema:
    (_, schemas) = msgspec.json.schema_components(_BODY_TYPES,
                                                  ref_template="#/components/schemas/{name}")
    _ecma_patterns(schemas)
    schemas["JobRequest"]["allOf"] = _job_rules(catalog, default_model, flow_enabled, today)
    # an extension continues a video: it takes no frames or references of its own
    schemas["ClipSpec"]["anyOf"] = [
        {"properties": {"extend_from": {"type": "null"}}},
        {"properties": {"first_frame": {"type": "null"}, "last_frame": {"type": "null"},
                        "reference_images": {"maxItems": 0}}}]
    return schemas


def _ecma_patterns(node: Any) -> None:
    """Patterns that end in Python's ``\\Z`` (``jobs.whole``) are written with ECMA's ``$``."""
    if isinstance(node, dict):
        p = node.get("pattern")
        if isinstance(p, str) and p.endswith("\\Z"):
            node["pattern"] = p[:-2] + "$"
        for v in node.values():
            _ecma_patterns(v)
    elif isinstance(node, list):
        for v in node:
            _ecma_patterns(v)


def _links(targets: dict[str, str], **params: str) -> Schema:
    return {name: {"operationId": op, "parameters": params} for name, op in targets.items()}


# What a client may do with a job it just created. A new job has no variants and no final video
# yet, so the routes that read those (select, the final's video, poster and link) answer 404
# until it has finished: they are not follow-ups of a create, and are not linked from it.
_FROM_JOB = {"GetJob": "getJob", "DeleteJob": "deleteJob", "JobEvents": "jobEvents",
             "CancelJob": "cancelJob", "RetryJob": "retryJob", "RedoClip": "redoClip",
             "BuildFinal": "buildFinal"}


def document(catalog: Catalog | None = None, *, default_model: str = "gemini-omni-1.1-flash",
             flow_enabled: bool = True, today: date | None = None) -> Schema:
    catalog = catalog if catalog is not None else catalogmod.load()
    today = today or datetime.now(UTC).date()
    job_links = _links(_FROM_JOB, job_id="$response.body#/id")
    created = {**_json(wire.JobOut, "Created and queued", {
        **_JOB_HEADERS, "Preference-Applied": _header("`wait=N`, when `Prefer: wait=N` was "
                                                      "honoured", required=False)}),
        "links": job_links}
    replayed = {**_json(wire.JobOut, "The job an earlier request with this Idempotency-Key "
                        "created", {**_JOB_HEADERS,
                                    "Idempotent-Replayed": _header("`true`", {"const": "true"})}),
                "links": job_links}
    user_links = _links({"CreateToken": "createToken", "RevokeTokens": "revokeTokens"},
                        user_id="$response.body#/id")
    upload_links = {"CreateJobFromUpload": {
        "operationId": "createJob",
        # the id goes into the body; the body is the link's own, not merged with a generated
        # one (a generated body might carry `prompt` beside these clips)
        "requestBody": {"clips": [{"prompt": "a scene starting from this frame",
                                   "first_frame": "$response.body#/id"}]},
        "x-schemathesis": {"merge_body": False}}}
    job = [_JOB]
    json_body = ("400", "401", "413", "422")
    paths: dict[str, Any] = {
        "/api/health": {"get": _op(
            "health", "Liveness of db, redis, storage and backends",
            {"200": _json(wire.Health), "503": _json(wire.Health, "Degraded")}, auth=False)},
        "/api/flow/queue/status": {"get": _op(
            "queueStatus", "Flow queue counts", {"200": _json(wire.QueueStatus)}, auth=False)},
        "/api/openapi.json": {"get": _op(
            "openapi", "This document", {"200": {"description": "OpenAPI 3.1", "content": {
                "application/json": {"schema": {"type": "object"}}}}}, auth=False)},
        "/api/uploads": {"post": _op(
            "createUpload", "Upload an image: a first or last frame, or a reference",
            {"201": {**_json(wire.UploadOut, "Stored"), "links": upload_links}},
            body={"type": "object", "properties": {"file": _BINARY}, "required": ["file"]},
            body_media="multipart/form-data", errors=("400", "401", "413", "415"),
            encoding={"file": {"contentType": "image/png, image/jpeg, image/webp"}},
            description="The field `file` holds a PNG, JPEG or WebP image, told by its bytes "
                        "(the part's own Content-Type is not trusted); anything else is a 415. "
                        "Its size is capped (`UPLOAD_MAX_BYTES`); a bigger one is a 413 "
                        "before it is read.")},
        "/api/keys": {
            "post": _op("createKey", "Store a Gemini API key (validated without spending "
                        "generation quota)",
                        {"201": {**_json(wire.KeyOut, "Stored (an invalid key is stored with "
                                         "status `invalid`)"),
                                 "links": _links({"DeleteKey": "deleteKey"},
                                                 key_id="$response.body#/id")}},
                        body=_ref(wire.KeyIn), errors=(*json_body, "409"),
                        description="409 when the caller has stored this key already; 422 "
                                    "(`key_cannot_use_model`) when Google says the key's "
                                    "project cannot use the default model."),
            "get": _op("listKeys", "The caller's keys, masked", {"200": _json(wire.KeyList)},
                       errors=("401",)),
        },
        "/api/keys/{key_id}": {"delete": _op("deleteKey", "Delete a key", _NO_CONTENT,
                                             params=[_KEY], errors=("401", "404"))},
        "/api/jobs": {
            "post": _op("createJob", "Create a job", {"201": created, "200": replayed},
                        body=_ref(wire.JobRequest), description=_JOB_DESCRIPTION,
                        params=[
                            {"name": "Idempotency-Key", "in": "header", "required": False,
                             "description": "makes a retried create safe: the same key and "
                                            "body answer with the first job",
                             "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                                        "pattern": f"^{IDEMPOTENCY_KEY}$"}},
                            {"name": "Prefer", "in": "header", "required": False,
                             "description": f"RFC 7240 preferences; `wait=N` holds the "
                                            f"response until the job ends or N seconds (at "
                                            f"most {MAX_PREFER_WAIT}) pass. Others are "
                                            f"ignored.",
                             "schema": {"type": "string"}}],
                        errors=(*json_body, "404", "409")),
            "get": _op("listJobs", "The caller's jobs, newest first",
                       {"200": _json(wire.JobList)},
                       params=[
                           _query("limit", {"type": "integer", "minimum": 1, "maximum": 100,
                                            "default": 20}, "jobs per page"),
                           _query("cursor", {"type": "string", "pattern": f"^{CURSOR}$"},
                                  "`next_cursor` of the previous page: url-safe base64 "
                                  "without padding; the page starts after the job it names"),
                           _query("status", {"enum": [s.value for s in core.JobStatus]},
                                  "only jobs in this status")],
                       errors=("401", "422"),
                       description="Query parameters other than these are refused (422)."),
        },
        "/api/jobs/{job_id}": {
            "get": _op("getJob", "A job", {"200": _json(wire.JobOut)}, params=job,
                       errors=("401", "404")),
            "delete": _op("deleteJob", "Delete a job and its stored objects", _NO_CONTENT,
                          params=job, errors=("401", "404", "409")),
        },
        "/api/jobs/{job_id}/events": {"get": _op(
            "jobEvents", "Server-Sent Events of the job's changes until it ends",
            {"200": {"description": "`event: job` with the whole job at each change, until "
                                    "it ends; `event: deleted` if it is deleted meanwhile",
                     "content": {"text/event-stream": {"schema": _EVENT}}}},
            params=job, errors=("401", "404", "429"))},
        "/api/jobs/{job_id}/cancel": {"post": _op(
            "cancelJob", "Cancel a job", {"200": _json(wire.JobOut)}, params=job,
            errors=("401", "404", "409"))},
        "/api/jobs/{job_id}/retry": {"post": _op(
            "retryJob", "Retry a failed or canceled job", {"202": _json(wire.JobOut)},
            params=job, errors=("401", "404", "409"))},
        "/api/jobs/{job_id}/clips/{index}/select": {"post": _op(
            "selectVariant", "Pick the variant the final video uses",
            {"200": _json(wire.JobOut)}, body=_ref(wire.SelectIn), params=[*job, _INDEX],
            errors=(*json_body, "404"),
            description="404 when the job has no such clip or the clip no such variant. "
                        f"The body may be at most {MAX_SMALL_BODY} bytes.")},
        "/api/jobs/{job_id}/clips/{index}/redo": {"post": _op(
            "redoClip", "Regenerate one clip of a finished job (optionally with a new "
            "prompt)", {"202": _json(wire.JobOut)}, body=_ref(wire.RedoIn),
            body_required=False, params=[*job, _INDEX], errors=(*json_body, "404", "409"))},
        "/api/jobs/{job_id}/final": {
            "post": _op("buildFinal", "Build or rebuild the stitched video",
                        {"202": _json(wire.JobOut)}, body=_ref(wire.FinalSpec),
                        body_required=False, params=job, errors=(*json_body, "404", "409"),
                        description="409 while the job is at work or a clip has not "
                                    "succeeded."),
            "get": _op("getFinal", "The stitched video", _VIDEO, params=job,
                       errors=("401", "404")),
        },
        "/api/jobs/{job_id}/final/poster": {"get": _op(
            "getFinalPoster", "A JPEG frame of the stitched video", _IMAGE, params=job,
            errors=("401", "404"))},
        "/api/jobs/{job_id}/final/link": {"get": _op(
            "getFinalLink", "A short-lived URL of the stitched video that needs no token",
            {"200": _json(wire.LinkOut)}, params=job, errors=("401", "404"))},
        "/api/jobs/{job_id}/outputs/{output_id}": {"get": _op(
            "getOutput", "A video", _VIDEO, params=[*job, _OUTPUT], errors=("401", "404"))},
        "/api/jobs/{job_id}/outputs/{output_id}/poster": {"get": _op(
            "getOutputPoster", "A JPEG frame of the video", _IMAGE, params=[*job, _OUTPUT],
            errors=("401", "404"))},
        "/api/jobs/{job_id}/outputs/{output_id}/link": {"get": _op(
            "getOutputLink", "A short-lived URL of the video that needs no token",
            {"200": _json(wire.LinkOut)}, params=[*job, _OUTPUT], errors=("401", "404"))},
        "/api/files/{token}": {"get": _op(
            "getFile", "A stored file named by a link token (local storage)",
            {"200": {"description": "The file; `Range` is honoured",
                     "content": {"video/mp4": {"schema": _BINARY},
                                 "image/jpeg": {"schema": _BINARY}}},
             "206": {"description": "Part of the file",
                     "content": {"video/mp4": {"schema": _BINARY},
                                 "image/jpeg": {"schema": _BINARY}}}},
            auth=False, params=[_TOKEN], errors=("404",))},
        "/api/models": {"get": _op("listModels", "The model catalog",
                                   {"200": _json(wire.ModelList)}, auth=False)},
        "/api/me": {"get": _op("me", "The caller, with its webhook signing secret",
                               {"200": _json(wire.Me)}, errors=("401",))},
        "/api/admin/users": {"post": _op(
            "createUser", "Create a user; the token is shown once",
            {"201": {**_json(wire.UserOut), "links": user_links}}, body=_ref(wire.UserIn),
            errors=(*json_body, "403"))},
        "/api/admin/users/{user_id}/tokens": {
            "post": _op("createToken", "Create a fresh token for a user (shown once)",
                        {"201": {**_json(wire.TokenOut), "links": _links(
                            {"RevokeTokens": "revokeTokens"},
                            user_id="$response.body#/user_id")}},
                        params=[_USER], errors=("401", "403", "404")),
            "delete": _op("revokeTokens", "Revoke every token of a user",
                          {"200": _json(wire.Revoked)}, params=[_USER],
                          errors=("401", "403", "404")),
        },
        "/api/admin/flow/auth": {
            "post": _op("uploadFlowAuth", "Upload a Flow login (Playwright storage state)",
                        {"201": _json(wire.FlowAuthStatus)}, body=_ref(wire.StorageState),
                        params=[_ACCOUNT], errors=(*json_body, "403"),
                        description="Stored encrypted; paused Flow work of the account "
                                    "resumes."),
            "get": _op("getFlowAuth", "Flow login status (never a cookie's value)",
                       {"200": _json(wire.FlowAuthStatus)}, params=[_ACCOUNT],
                       errors=("401", "403", "422")),
        },
        "/api/admin/flow/queue/retry-failed": {"post": _op(
            "retryFailedFlow", "Re-queue every failed Flow job (of one account, if given)",
            {"200": _json(wire.RetryFailed)},
            params=[{**_ACCOUNT, "description": "only this Flow account's jobs"}],
            errors=("401", "403", "422"))},
        "/metrics": {"get": _op("metrics", "Prometheus metrics", {"200": {
            "description": "Prometheus text format", "content": {"text/plain": {"schema": {
                "type": "string"}}}}}, auth=False)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Veo service", "version": "1",
                 "description": "Prompts in, Google Veo videos out. Errors are "
                                "`{\"error\": {\"code\", \"message\", \"details\"?}}`."},
        "paths": paths,
        "components": {"schemas": _components(catalog, default_model, flow_enabled, today),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


async def serve(request: Request) -> Response:
    """The document for this process's catalog and settings, built once a day (models retire
    by date) and kept encoded."""
    svc = request.app.state.services
    today = datetime.now(UTC).date()
    cached: tuple[date, bytes] | None = getattr(request.app.state, "openapi", None)
    if cached is None or cached[0] != today:
        doc = document(svc.catalog, default_model=svc.settings.default_model,
                       flow_enabled=svc.settings.flow_enabled, today=today)
        cached = (today, msgspec.json.encode(doc))
        request.app.state.openapi = cached
    return Response(cached[1], media_type="application/json")
