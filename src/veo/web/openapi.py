"""``GET /api/openapi.json``: OpenAPI 3.1 built from the msgspec types of ``schemas``."""

from __future__ import annotations

from typing import Any

import msgspec

from veo import wire

_BODY_TYPES: list[Any] = [
    wire.JobRequest, wire.JobOut, wire.JobList, wire.UploadOut, wire.KeyIn,
    wire.KeyOut, wire.KeyList, wire.UserIn, wire.UserOut, wire.Me,
    wire.Health, wire.QueueStatus, wire.FlowAuthStatus, wire.RetryFailed,
    wire.ErrorBody, wire.SelectIn, wire.RedoIn, wire.FinalSpec, wire.ModelList, wire.TokenOut,
    wire.Revoked, wire.LinkOut,
]


def _ref(t: Any) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{t.__name__}"}


def _json(t: Any, desc: str = "OK") -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": _ref(t)}}}


_ERR = {code: _json(wire.ErrorBody, "Error") for code in ("400", "401", "403", "404", "409",
                                                           "413", "415", "422", "429")}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(summary: str, responses: dict[str, Any], *, body: Any = None, auth: bool = True,
        params: list[dict[str, Any]] | None = None, body_media: str = "application/json",
        errors: tuple[str, ...] = ("401", "404", "422")) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary,
                          "responses": {**responses, **{c: _ERR[c] for c in errors}}}
    if auth:
        op["security"] = _AUTH
    if body is not None:
        op["requestBody"] = {"required": True, "content": {body_media: {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _index() -> dict[str, Any]:
    return {"name": "index", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": 49}}


_VIDEO: dict[str, Any] = {
    "200": {"description": "video/mp4 (local storage; Range supported)",
            "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}},
    "206": {"description": "Partial content"},
    "302": {"description": "Redirect to a short-lived presigned URL (S3)"}}
_IMAGE: dict[str, Any] = {
    "200": {"description": "image/jpeg",
            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
    "302": {"description": "Redirect to a short-lived presigned URL (S3)"}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def document() -> dict[str, Any]:
    (_, components) = msgspec.json.schema_components(_BODY_TYPES,
                                                     ref_template="#/components/schemas/{name}")
    job = [_path_param("job_id")]
    no_content = {"204": {"description": "Deleted"}}
    paths: dict[str, Any] = {
        "/api/health": {"get": _op("Liveness of db, redis, storage and backends",
                                   {"200": _json(wire.Health),
                                    "503": _json(wire.Health, "Degraded")},
                                   auth=False, errors=())},
        "/api/flow/queue/status": {"get": _op("Flow queue counts",
                                              {"200": _json(wire.QueueStatus)}, auth=False,
                                              errors=())},
        "/api/uploads": {"post": _op(
            "Upload a start/end frame image", {"201": _json(wire.UploadOut)},
            body={"type": "object", "properties": {"file": {"type": "string",
                                                            "format": "binary"}},
                  "required": ["file"]},
            body_media="multipart/form-data", errors=("400", "401", "413", "415"))},
        "/api/keys": {
            "post": _op("Store a Gemini API key", {"201": _json(wire.KeyOut)},
                        body=_ref(wire.KeyIn), errors=("400", "401", "422")),
            "get": _op("List the caller's keys", {"200": _json(wire.KeyList)},
                       errors=("401",)),
        },
        "/api/keys/{key_id}": {"delete": _op("Delete a key", no_content,
                                             params=[_path_param("key_id")],
                                             errors=("401", "404"))},
        "/api/jobs": {
            "post": _op("Create a job", {"201": _json(wire.JobOut),
                                         "200": _json(wire.JobOut, "Idempotent replay")},
                        body=_ref(wire.JobRequest),
                        params=[{"name": "Idempotency-Key", "in": "header", "required": False,
                                 "schema": {"type": "string", "maxLength": 255}}],
                        errors=("400", "401", "409", "413", "422")),
            "get": _op("List the caller's jobs, newest first", {"200": _json(wire.JobList)},
                       params=[_query("limit", {"type": "integer", "minimum": 1,
                                                "maximum": 100}),
                               _query("cursor", {"type": "string"}),
                               _query("status", {"type": "string", "enum": [
                                   "queued", "running", "succeeded", "failed", "canceled",
                                   "paused"]})],
                       errors=("401", "422")),
        },
        "/api/jobs/{job_id}": {
            "get": _op("Get a job", {"200": _json(wire.JobOut)}, params=job,
                       errors=("401", "404")),
            "delete": _op("Delete a job and its stored objects", no_content, params=job,
                          errors=("401", "404", "409")),
        },
        "/api/models": {"get": _op("The model catalog", {"200": _json(wire.ModelList)},
                                   auth=False, errors=())},
        "/api/jobs/{job_id}/clips/{index}/select": {"post": _op(
            "Pick the variant the final video uses", {"200": _json(wire.JobOut)},
            body=_ref(wire.SelectIn), params=[*job, _index()],
            errors=("400", "401", "404", "422"))},
        "/api/jobs/{job_id}/clips/{index}/redo": {"post": _op(
            "Regenerate one clip of a finished job (optionally with a new prompt)",
            {"202": _json(wire.JobOut)}, body=_ref(wire.RedoIn), params=[*job, _index()],
            errors=("400", "401", "404", "409", "422"))},
        "/api/jobs/{job_id}/final": {
            "post": _op("Build or rebuild the stitched video", {"202": _json(wire.JobOut)},
                        body=_ref(wire.FinalSpec), params=job,
                        errors=("400", "401", "404", "409", "422")),
            "get": _op("The stitched video", _VIDEO, params=job, errors=("401", "404")),
        },
        "/api/jobs/{job_id}/final/link": {"get": _op(
            "A short-lived URL of the stitched video that needs no token",
            {"200": _json(wire.LinkOut)}, params=job, errors=("401", "404"))},
        "/api/jobs/{job_id}/outputs/{output_id}/link": {"get": _op(
            "A short-lived URL of the video that needs no token", {"200": _json(wire.LinkOut)},
            params=[*job, _path_param("output_id")], errors=("401", "404"))},
        "/api/files/{token}": {"get": _op(
            "A stored file named by a link token (local storage)", _VIDEO, auth=False,
            params=[_path_param("token")], errors=("404",))},
        "/api/jobs/{job_id}/final/poster": {"get": _op(
            "A JPEG frame of the stitched video", _IMAGE, params=job, errors=("401", "404"))},
        "/api/jobs/{job_id}/outputs/{output_id}/poster": {"get": _op(
            "A JPEG frame of the video", _IMAGE, params=[*job, _path_param("output_id")],
            errors=("401", "404"))},
        "/api/admin/users/{user_id}/tokens": {
            "post": _op("Create a fresh token for a user (shown once)",
                        {"201": _json(wire.TokenOut)}, params=[_path_param("user_id")],
                        errors=("401", "403", "404")),
            "delete": _op("Revoke every token of a user", {"200": _json(wire.Revoked)},
                          params=[_path_param("user_id")], errors=("401", "403", "404")),
        },
        "/api/jobs/{job_id}/events": {"get": _op(
            "Server-Sent Events of the job's changes",
            {"200": {"description": "text/event-stream",
                     "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
            params=job, errors=("401", "404"))},
        "/api/jobs/{job_id}/cancel": {"post": _op("Cancel a job", {"200": _json(wire.JobOut)},
                                                  params=job, errors=("401", "404", "409"))},
        "/api/jobs/{job_id}/retry": {"post": _op("Retry a failed or canceled job",
                                                 {"202": _json(wire.JobOut)}, params=job,
                                                 errors=("401", "404", "409"))},
        "/api/jobs/{job_id}/outputs/{output_id}": {"get": _op(
            "Download a video",
            {"200": {"description": "video/mp4 (local storage; Range supported)",
                     "content": {"video/mp4": {"schema": {"type": "string",
                                                          "format": "binary"}}}},
             "206": {"description": "Partial content"},
             "302": {"description": "Redirect to a short-lived presigned URL (S3)"}},
            params=[*job, _path_param("output_id")], errors=("401", "404"))},
        "/api/me": {"get": _op("The caller, with its webhook signing secret",
                               {"200": _json(wire.Me)}, errors=("401",))},
        "/api/admin/users": {"post": _op("Create a user; the token is shown once",
                                         {"201": _json(wire.UserOut)},
                                         body=_ref(wire.UserIn),
                                         errors=("400", "401", "403", "422"))},
        "/api/admin/flow/auth": {
            "post": _op("Upload a Flow storage state (Playwright JSON)",
                        {"201": _json(wire.FlowAuthStatus)},
                        body={"type": "object"}, params=[_query("account", {"type": "string"})],
                        errors=("400", "401", "403", "413", "422")),
            "get": _op("Flow auth status", {"200": _json(wire.FlowAuthStatus)},
                       params=[_query("account", {"type": "string"})],
                       errors=("401", "403", "422")),
        },
        "/api/admin/flow/queue/retry-failed": {"post": _op(
            "Re-queue every failed Flow job", {"200": _json(wire.RetryFailed)},
            params=[_query("account", {"type": "string"})], errors=("401", "403"))},
        "/metrics": {"get": _op("Prometheus metrics", {"200": {
            "description": "text/plain", "content": {"text/plain": {"schema": {
                "type": "string"}}}}}, auth=False, errors=())},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Veo service", "version": "1",
                 "description": "Prompts in, Google Veo videos out."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
