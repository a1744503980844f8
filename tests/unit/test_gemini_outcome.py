"""The Gemini adapter's pure parts: what an interaction means for a clip, how Google's errors
(both google-genai families, built here as the SDK builds them) become ours, the request body."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest
from google.genai import _interactions as ix
from google.genai import errors as genai_errors
from google.genai import interactions as sdk_types

from veo import logs
from veo.errors import GenerationFailed, KeyProblem, ModelRetired
from veo.gemini import (
    RETRYABLE_RPC,
    Blob,
    Interaction,
    RemoteError,
    Video,
    from_sdk,
    outcome,
    request_body,
    translate,
)

URL = "https://generativelanguage.googleapis.com/v1beta/interactions"


def classic_key() -> str:
    return "AI" + "za" + uuid.uuid4().hex + "Zz"  # built at run time: no key-like literal


def aq_key() -> str:
    return "A" + "Q." + uuid.uuid4().hex + uuid.uuid4().hex[:6]


def sdk_interaction(**fields: Any) -> Any:
    return sdk_types.Interaction.model_validate({"id": "v1_x", "model": "gemini-omni-1.1-flash",
                                                 **fields})


def interactions_error(cls: type[ix.APIStatusError], status: int, body: Any,
                       headers: dict[str, str] | None = None) -> ix.APIStatusError:
    response = httpx.Response(status, headers=headers, request=httpx.Request("POST", URL))
    return cls(f"Error code: {status} - {body}", response=response, body=body)


# ---- outcome --------------------------------------------------------------------------------

def test_completed_with_video_gives_the_videos() -> None:
    raw = sdk_interaction(status="completed", steps=[
        {"type": "model_output", "content": [
            {"type": "video", "mime_type": "video/mp4",
             "data": base64.b64encode(b"\x00\x01mp4").decode()},
            {"type": "video", "uri": "https://generativelanguage.googleapis.com/v1beta/files/"
                                     "abc123:download?alt=media"}]}])
    assert raw.output_video is not None  # the SDK's own helper sees our shape
    got = from_sdk(raw)
    assert got.status == "completed" and got.id == "v1_x"
    assert outcome(got) == (Video(data=b"\x00\x01mp4"),
                            Video(uri="https://generativelanguage.googleapis.com/v1beta/files/"
                                      "abc123:download?alt=media"))


def test_completed_with_text_only_is_a_safety_refusal() -> None:
    raw = sdk_interaction(status="completed", steps=[{"type": "model_output", "content": [
        {"type": "text", "text": "I can't make that video. You have not been charged."}]}])
    result = outcome(from_sdk(raw))
    assert isinstance(result, GenerationFailed)
    assert result.code == "safety_filtered" and not result.retryable
    assert "You have not been charged" in result.message


def test_completed_with_nothing_is_odd_but_retryable() -> None:
    result = outcome(from_sdk(sdk_interaction(status="completed", steps=[])))
    assert isinstance(result, GenerationFailed) and result.code == "empty_result"
    assert result.retryable


@pytest.mark.parametrize("status", ["queued", "in_progress", "requires_continuation"])
def test_pending(status: str) -> None:
    assert outcome(from_sdk(sdk_interaction(status=status))) is None


@pytest.mark.parametrize("rpc", range(1, 17))
def test_failed_retryable_by_rpc_code(rpc: int) -> None:
    raw = sdk_interaction(status="failed", steps=[
        {"type": "model_output", "error": {"code": rpc, "message": "it broke"}}])
    result = outcome(from_sdk(raw))
    assert isinstance(result, GenerationFailed) and result.code == "generation_failed"
    assert result.retryable is (rpc in {1, 2, 4, 8, 10, 13, 14})
    assert result.details == {"rpc_code": rpc}


def test_retryable_set_is_the_transient_rpc_codes() -> None:
    # CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNAVAILABLE
    assert frozenset({1, 2, 4, 8, 10, 13, 14}) == RETRYABLE_RPC


def test_failed_with_only_top_level_errors() -> None:
    internal = from_sdk({"id": "v1_y", "status": "failed",
                         "errors": [{"code": "internal", "message": "boom"}]})
    assert internal.error == RemoteError(code="internal", message="boom", retryable=True,
                                         rpc_code=13)
    refused = from_sdk({"id": "v1_y", "status": "failed",
                        "errors": [{"code": "invalid_request", "message": "no"}]})
    result = outcome(refused)
    assert isinstance(result, GenerationFailed) and not result.retryable
    bare = outcome(from_sdk({"id": "v1_y", "status": "failed"}))
    assert isinstance(bare, GenerationFailed) and bare.retryable


@pytest.mark.parametrize(("status", "code", "retryable"), [
    ("budget_exceeded", "budget_exceeded", False),
    ("incomplete", "incomplete", True),
    ("requires_action", "requires_action", False),
    ("cancelled", "interaction_cancelled", True),
    ("something_new", "unexpected_status", True),
])
def test_other_endings(status: str, code: str, retryable: bool) -> None:
    result = outcome(Interaction(id="v1_z", status=status))
    assert isinstance(result, GenerationFailed)
    assert (result.code, result.retryable) == (code, retryable)


def test_texts_from_google_are_redacted() -> None:
    key = aq_key()
    got = from_sdk({"id": "v1_k", "status": "failed", "steps": [
        {"type": "model_output", "content": [{"type": "text", "text": f"key {key}"}],
         "error": {"code": 7, "message": f"Consumer 'api_key:{key}' has been suspended."}}]})
    assert key not in got.text and key not in (got.error.message if got.error else "")
    assert key not in str(outcome(got))


# ---- translate: the classic family (google.genai.errors) -------------------------------------

def test_classic_bad_key_is_invalid() -> None:
    exc = genai_errors.ClientError(400, {"error": {
        "code": 400, "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "API_KEY_INVALID"}]}})
    err = translate(exc)
    assert isinstance(err, KeyProblem) and err.invalid and err.code == "key_invalid"


@pytest.mark.parametrize("make_key", [classic_key, aq_key], ids=["AIza", "AQ"])
def test_classic_suspended_key_is_invalid_and_redacted(make_key: Any) -> None:
    key = make_key()
    exc = genai_errors.ClientError(403, {"error": {
        "code": 403, "message": f"Permission denied: Consumer 'api_key:{key}' has been "
        "suspended.", "status": "PERMISSION_DENIED"}})
    err = translate(exc)
    assert isinstance(err, KeyProblem) and err.invalid
    assert key not in err.message and "has been suspended" in err.message


def test_classic_quota_reads_retry_info() -> None:
    exc = genai_errors.ClientError(429, {"error": {
        "code": 429, "message": "You exceeded your current quota.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                     "retryDelay": "17s"}]}})
    err = translate(exc)
    assert isinstance(err, KeyProblem) and not err.invalid and err.retry_after == 17.0


def test_classic_retired_veo_path() -> None:
    exc = genai_errors.ClientError(404, {"error": {
        "code": 404, "status": "NOT_FOUND",
        "message": "models/veo-3.0-generate-001 is not found for API version v1beta, or is "
                   "not supported for predictLongRunning. Call ListModels to see the list."}})
    err = translate(exc)
    assert isinstance(err, ModelRetired) and err.model == "veo-3.0-generate-001"
    assert err.replacement is None and not err.retryable and err.code == "model_retired"


def test_classic_server_error_is_retryable() -> None:
    err = translate(genai_errors.ServerError(503, {"error": {
        "code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}))
    assert isinstance(err, GenerationFailed) and err.retryable and err.code == "server_error"


def test_a_403_about_a_file_is_not_a_key_problem() -> None:
    err = translate(genai_errors.ClientError(403, {"error": {
        "code": 403, "status": "PERMISSION_DENIED",
        "message": "You do not have permission to access the File abc or it may not exist."}}))
    assert not isinstance(err, KeyProblem)
    assert isinstance(err, GenerationFailed) and err.code == "not_found" and not err.retryable


# ---- translate: the Interactions API family (google.genai._interactions) ---------------------

def test_interactions_rate_limit() -> None:
    exc = interactions_error(ix.RateLimitError, 429, {"error": {
        "code": "rate_limit_exceeded", "message": "Quota exceeded. Please retry in 12.5s.",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                     "retryDelay": "12.500s"}]}})
    err = translate(exc)
    assert isinstance(err, KeyProblem) and not err.invalid and err.retry_after == 12.5


def test_retry_after_from_the_text_or_the_header() -> None:
    text = interactions_error(ix.RateLimitError, 429, {"error": {
        "code": "rate_limit_exceeded", "message": "Slow down. Please retry in 3.5s."}})
    assert translate(text).retry_after == 3.5  # type: ignore[attr-defined]
    header = interactions_error(ix.RateLimitError, 429, {"error": {
        "code": "rate_limit_exceeded", "message": "Slow down."}}, headers={"retry-after": "9"})
    assert translate(header).retry_after == 9.0  # type: ignore[attr-defined]
    neither = interactions_error(ix.RateLimitError, 429, "Too Many Requests")
    assert translate(neither).retry_after is None  # type: ignore[attr-defined]


def test_interactions_authentication_and_permission() -> None:
    key = aq_key()
    unauth = translate(interactions_error(ix.AuthenticationError, 401, {"error": {
        "code": "authentication", "message": "API key not valid."}}))
    assert isinstance(unauth, KeyProblem) and unauth.invalid
    denied = translate(interactions_error(ix.PermissionDeniedError, 403, {"error": {
        "code": "permission_denied",
        "message": f"Permission denied: Consumer 'api_key:{key}' has been suspended."}}))
    assert isinstance(denied, KeyProblem) and denied.invalid and key not in denied.message


def test_interactions_retired_model_names_its_replacement() -> None:
    err = translate(interactions_error(ix.NotFoundError, 404, {"error": {
        "code": "model_not_found",
        "message": "This model models/veo-3.1-generate-preview is no longer available. Please "
                   "update your code to use models/gemini-omni-1.1-flash."}}))
    assert isinstance(err, ModelRetired) and err.model == "veo-3.1-generate-preview"
    assert err.replacement == "gemini-omni-1.1-flash"
    assert err.details == {"model": "veo-3.1-generate-preview",
                           "replacement": "gemini-omni-1.1-flash"}


def test_interactions_unknown_interaction_is_not_found() -> None:
    err = translate(interactions_error(ix.NotFoundError, 404, {"error": {
        "code": "not_found", "message": "Interaction v1_abc not found."}}))
    assert type(err) is GenerationFailed and err.code == "not_found" and not err.retryable


def test_interactions_bad_request_and_server_errors() -> None:
    bad = translate(interactions_error(ix.BadRequestError, 400, {"error": {
        "code": "invalid_request", "message": "duration must be between 3s and 10s"}}))
    assert isinstance(bad, GenerationFailed) and not bad.retryable
    assert bad.code == "invalid_argument" and "between 3s and 10s" in bad.message
    conflict = translate(interactions_error(ix.ConflictError, 409, {"error": {
        "code": "conflict", "message": "busy"}}))
    assert isinstance(conflict, GenerationFailed) and not conflict.retryable
    down = translate(interactions_error(ix.InternalServerError, 503, "Service Unavailable"))
    assert isinstance(down, GenerationFailed) and down.retryable
    assert "Service Unavailable" in down.message


def test_transport_errors_are_retryable() -> None:
    request = httpx.Request("GET", URL)
    for exc in (ix.APIConnectionError(request=request), ix.APITimeoutError(request),
                httpx.ConnectError("refused", request=request), TimeoutError()):
        err = translate(exc)
        assert isinstance(err, GenerationFailed) and err.retryable
        assert err.code == "network_error"


# ---- the request body ----------------------------------------------------------------------

def test_text_only_sends_the_prompt_as_a_string() -> None:
    body = request_body(model="gemini-omni-1.1-flash", prompt="a cat", duration_seconds=7.5,
                        aspect_ratio="9:16")
    assert body == {"model": "gemini-omni-1.1-flash", "input": "a cat",
                    "response_format": {"type": "video", "aspect_ratio": "9:16",
                                        "resolution": "720p", "delivery": "uri",
                                        "duration": "7.5s"},
                    "generation_config": {"video_config": {"task": "text_to_video"}},
                    "background": True, "store": True}


def test_images_are_marked_in_order() -> None:
    red, blue = Blob(b"red", "image/png"), Blob(b"blue", "image/jpeg")
    frames = request_body(model="m", prompt="p", first_frame=red, last_frame=blue)
    assert frames["generation_config"]["video_config"]["task"] == "image_to_video"
    assert frames["input"] == [
        {"type": "text", "text": "p"},
        {"type": "text", "text": "<FIRST_FRAME>"},
        {"type": "image", "data": base64.b64encode(b"red").decode(), "mime_type": "image/png"},
        {"type": "text", "text": "<LAST_FRAME>"},
        {"type": "image", "data": base64.b64encode(b"blue").decode(),
         "mime_type": "image/jpeg"}]
    refs = request_body(model="m", prompt="p", references=[red, blue, red])
    assert refs["generation_config"]["video_config"]["task"] == "reference_to_video"
    assert [b["text"] for b in refs["input"] if b["type"] == "text"] == [
        "p", "<IMAGE_REF_1>", "<IMAGE_REF_2>", "<IMAGE_REF_3>"]
    assert "duration" not in refs["response_format"]  # Google's default length


def test_extension_by_previous_id_or_by_video() -> None:
    prev = request_body(model="m", prompt="on", previous_interaction_id="v1_a",
                        duration_seconds=5, delivery="inline")
    assert prev["previous_interaction_id"] == "v1_a" and prev["input"] == "on"
    assert prev["generation_config"]["video_config"]["task"] == "extend"
    assert prev["response_format"]["duration"] == "5s"
    assert prev["response_format"]["delivery"] == "inline"
    upload = request_body(model="m", prompt="on", video=Blob(b"mp4", "video/mp4"))
    assert upload["input"][1] == {"type": "video", "data": base64.b64encode(b"mp4").decode(),
                                  "mime_type": "video/mp4"}
    assert upload["generation_config"]["video_config"]["task"] == "extend"


@pytest.mark.parametrize("make_key", [classic_key, aq_key], ids=["AIza", "AQ"])
def test_both_key_shapes_are_redacted(make_key: Any) -> None:
    key = make_key()
    assert key not in logs.redact_text(f"Consumer 'api_key:{key}' has been suspended.")
    assert key not in logs.redact_text(f"the key {key} failed")


def test_sdk_wrapper_models_are_built_once_per_type() -> None:
    """google-genai builds a pydantic class around every body it sends or reads; the adapter
    makes it reuse one per type (an SDK upgrade that moves the hook fails here, not silently
    in production's CPU)."""
    from google.genai._gaos.utils import serializers
    from pydantic import ConfigDict

    from veo import gemini

    assert gemini.SDK_MODELS_REUSED
    build: Any = serializers.create_model
    config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)
    first = build("Unmarshaller", body=(sdk_types.Interaction, ...), __config__=config)
    again = build("Unmarshaller", body=(sdk_types.Interaction, ...), __config__=config)
    other = build("Marshaller", body=(sdk_types.Interaction, ...), __config__=config)
    assert first is again and other is not first
    # and what it builds still parses a response as the SDK would
    parsed = serializers.unmarshal_json(
        '{"id": "i1", "status": "in_progress", "created": "2026-12-01T00:00:00Z",'
        ' "updated": "2026-12-01T00:00:00Z"}', sdk_types.Interaction)
    assert parsed.id == "i1" and parsed.status == "in_progress"


def test_sdk_parameter_type_hints_are_resolved_once_per_class() -> None:
    """google-genai resolves the type hints of a request's path and query parameter classes on
    every call; the adapter resolves them once per class, and the SDK still builds the same URL
    and query from them."""
    import typing

    from google.genai._gaos.models.getinteractionbyid import GetInteractionByIDRequest
    from google.genai._gaos.utils import queryparams, url

    from veo import gemini

    assert gemini.SDK_TYPE_HINTS_REUSED
    params = GetInteractionByIDRequest
    first = queryparams.get_type_hints(params)
    assert first == typing.get_type_hints(params) and "id" in first
    first["id"] = int  # a caller's change does not reach the next caller
    assert url.get_type_hints(params)["id"] is not int
    request = params(interactionsId="v1_abc", api_version="v1beta", include_input=True)
    path = "/{api_version}/interactions/{interactionsId}"
    assert url.generate_url("https://g.test", path, request) == \
        "https://g.test/v1beta/interactions/v1_abc"
    assert queryparams.get_query_params(request) == {"include_input": ["true"]}
