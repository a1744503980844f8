"""The job core with no I/O: request validation (with the catalog's per-model rules), backend
routing, the failure policy and the final video's options (``veo.jobs``)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import pytest

from veo import catalog as catalogmod
from veo import jobs
from veo.errors import (
    AccountCooling,
    AllKeysCooling,
    ConfigError,
    GenerationFailed,
    InvalidRequest,
    KeyProblem,
    LoginRequired,
    ModelRetired,
    NoUsableKey,
)
from veo.records import ErrorInfo
from veo.web.jobs import decode_job_request

TODAY = date(2026, 12, 1)  # after the Veo ids' shutdown on the Gemini API
DEFAULT = "gemini-omni-1.1-flash"
CATALOG = catalogmod.load()


def valid(body: dict[str, Any], *, catalog: catalogmod.Catalog = CATALOG,
          today: date = TODAY) -> jobs.ValidJob:
    # decoded as the web decodes a body: the constraints on single fields are the types'
    # (refused while decoding), the rules across fields and the catalog's are validate's
    req = decode_job_request(msgspec.json.encode(body))
    return jobs.validate(req, catalog, DEFAULT, today)


def refused(body: dict[str, Any], backend: str | None = None, *,
            catalog: catalogmod.Catalog = CATALOG, today: date = TODAY) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        v = valid(body, catalog=catalog, today=today)
        jobs.check_capabilities(v, backend or "api")
    return caught.value


# ---- validation that holds on any backend -------------------------------------------------------

FIELD_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({}, "prompt"),
    ({"prompt": "x", "clips": [{"prompt": "y"}]}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * (jobs.MAX_PROMPT_CHARS + 1)}, "prompt"),
    ({"clips": []}, "clips"),
    ({"clips": [{"prompt": "y"}] * (jobs.MAX_CLIPS + 1)}, "clips"),
    ({"clips": [{"prompt": "a"}, {"prompt": ""}]}, "clips[1].prompt"),
    ({"clips": [{"prompt": "a", "last_frame": "upl_" + "0" * 24}]}, "clips[0].last_frame"),
    ({"clips": [{"prompt": "a", "reference_images": ["upl_" + str(i) * 24 for i in range(4)]}]},
     "clips[0].reference_images"),
    ({"clips": [{"prompt": "a", "reference_images": ["upl_" + "1" * 24] * 2}]},
     "clips[0].reference_images"),
    ({"clips": [{"prompt": "a", "extend_from": "out_" + "1" * 24,
                 "first_frame": "upl_" + "1" * 24}]}, "clips[0].extend_from"),
    ({"continuity": "chain", "clips": [{"prompt": "a"},
                                       {"prompt": "b", "first_frame": "upl_" + "1" * 24}]},
     "clips[1].first_frame"),
    ({"prompt": "x", "number_of_videos": 0}, "number_of_videos"),
    ({"prompt": "x", "number_of_videos": 5}, "number_of_videos"),
    ({"prompt": "x", "negative_prompt": "n" * (jobs.MAX_PROMPT_CHARS + 1)}, "negative_prompt"),
    ({"prompt": "x", "webhook_url": "ftp://example.com/hook"}, "webhook_url"),
    ({"prompt": "x", "webhook_url": "https://example.com/" + "a" * 2000}, "webhook_url"),
    ({"prompt": "x", "model": "veo-9-ultra"}, "model"),
    ({"prompt": "x", "final": {"crossfade_seconds": 0.05}}, "final.crossfade_seconds"),
]


@pytest.mark.parametrize(("body", "field"), FIELD_ERRORS)
def test_invalid_requests_name_their_field(body: dict[str, Any], field: str) -> None:
    err = refused(body)
    assert err.details == {"field": field}, (body, err.message)
    assert field in err.message
    assert err.status == 422


def test_defaults_are_applied() -> None:
    v = valid({"prompt": "a lighthouse"})
    assert v.model.id == DEFAULT and v.requested_backend == "auto" and v.continuity == "none"
    assert [c.prompt for c in v.clips] == ["a lighthouse"]
    assert (v.params.aspect_ratio, v.params.resolution, v.params.number_of_videos) == \
        ("16:9", "720p", 1)
    assert v.final is None and v.webhook_url is None
    # duration 0 means "the model's default", which the capability check fills in
    assert v.params.duration_seconds == 0
    assert jobs.check_capabilities(v, "api").duration_seconds == 8


def test_fifty_clips_are_accepted() -> None:
    v = valid({"clips": [{"prompt": f"clip {i}"} for i in range(jobs.MAX_CLIPS)]})
    assert len(v.clips) == jobs.MAX_CLIPS


def test_unknown_model_lists_only_models_still_served() -> None:
    err = refused({"prompt": "x", "model": "nope"})
    assert "gemini-omni-1.1-flash" in err.message
    assert "veo-3.1-generate-preview" not in err.message  # retired: not offered


# ---- per-model rules from the catalog ------------------------------------------------------

def test_retired_model_is_refused_naming_its_replacement() -> None:
    err = refused({"prompt": "x", "model": "veo-3.1-generate-preview"})
    assert err.code == "model_retired"
    assert err.details == {"field": "model", "replacement": "gemini-omni-1.1-flash"}
    assert "gemini-omni-1.1-flash" in err.message and "2026-10-22" in err.message
    # the day before its shutdown date the same model is still accepted by the resolver
    assert jobs.resolve_model(CATALOG, "veo-3.1-generate-preview", date(2026, 10, 21)).id == \
        "veo-3.1-generate-preview"


def test_aliases_resolve_to_the_catalog_id() -> None:
    assert valid({"prompt": "x", "model": "omni"}).model.id == "gemini-omni-1.1-flash"


CAPABILITY_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({"prompt": "x", "duration_seconds": 11}, "api", "duration_seconds"),
    ({"prompt": "x", "duration_seconds": 2}, "api", "duration_seconds"),
    ({"prompt": "x", "negative_prompt": "no cats"}, "api", "negative_prompt"),
    ({"prompt": "x", "enhance_prompt": True}, "api", "enhance_prompt"),
    ({"prompt": "x", "person_generation": "allow_all"}, "api", "person_generation"),
    # Omni in Flow: 360p/720p only, no reference images, no extension, no 3 s clips
    ({"prompt": "x", "resolution": "4k"}, "flow", "resolution"),
    ({"prompt": "x", "duration_seconds": 3}, "flow", "duration_seconds"),
    ({"clips": [{"prompt": "a", "reference_images": ["upl_" + "1" * 24]}]}, "flow",
     "clips[0].reference_images"),
    ({"clips": [{"prompt": "a", "extend_from": "out_" + "1" * 24}]}, "flow",
     "clips[0].extend_from"),
    # Veo in Flow: 720p and 4/6/8 s
    ({"prompt": "x", "model": "veo-3.1-fast", "resolution": "1080p"}, "flow", "resolution"),
    ({"prompt": "x", "model": "veo-3.1-fast", "duration_seconds": 5}, "flow",
     "duration_seconds"),
]


@pytest.mark.parametrize(("body", "backend", "field"), CAPABILITY_ERRORS)
def test_model_rules_are_checked_per_backend(body: dict[str, Any], backend: str,
                                             field: str) -> None:
    err = refused(body, backend)
    assert err.details == {"field": field}, err.message


def test_what_a_model_accepts_on_one_backend_passes() -> None:
    v = valid({"clips": [{"prompt": "a", "reference_images": ["upl_" + "1" * 24,
                                                             "upl_" + "2" * 24,
                                                             "upl_" + "3" * 24]}],
               "resolution": "4k", "duration_seconds": 3, "aspect_ratio": "9:16",
               "number_of_videos": 4})
    p = jobs.check_capabilities(v, "api")
    assert (p.resolution, p.duration_seconds, p.aspect_ratio, p.number_of_videos) == \
        ("4k", 3, "9:16", 4)
    flow = jobs.check_capabilities(valid({"prompt": "x", "model": "veo-3.1-fast"}), "flow")
    assert (flow.resolution, flow.duration_seconds) == ("720p", 8)


def _catalog_with(tmp_path: Path, text: str) -> catalogmod.Catalog:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return catalogmod.load(str(path))


def test_catalog_file_adds_models_and_moves_shutdown_dates(tmp_path: Path) -> None:
    cat = _catalog_with(tmp_path, """
[models."studio-1"]
protocol = "interactions"
backends = ["api"]
resolutions = ["720p"]
durations = [6]
default_duration = 6
first_frame = false

[models."gemini-omni-1.2-flash"]
shutdown = 2026-11-30
replacement = "gemini-omni-1.1-flash"
""")
    v = valid({"prompt": "x", "model": "studio-1"}, catalog=cat)
    assert jobs.check_capabilities(v, "api").duration_seconds == 6
    assert refused({"prompt": "x", "model": "studio-1", "resolution": "1080p"},
                   catalog=cat).details == {"field": "resolution"}
    # a model without first frames cannot chain clips (each would start from a frame)
    chain = {"model": "studio-1", "continuity": "chain",
             "clips": [{"prompt": "a"}, {"prompt": "b"}]}
    assert refused(chain, catalog=cat).details == {"field": "clips[1].first_frame"}
    # the shipped entry was merged, not replaced: it keeps its capabilities, gains a date
    assert refused({"prompt": "x", "model": "gemini-omni-1.2-flash"},
                   catalog=cat).code == "model_retired"
    assert cat.get("gemini-omni-1.2-flash").resolutions  # type: ignore[union-attr]


def test_catalog_file_with_unknown_replacement_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown replacement"):
        _catalog_with(tmp_path, '[models."x-1"]\nprotocol = "interactions"\n'
                                'backends = ["api"]\nreplacement = "nowhere"\n')


# ---- routing -----------------------------------------------------------------------------------

OMNI = CATALOG.get("gemini-omni-1.1-flash")
OMNI_API_ONLY = CATALOG.get("gemini-omni-1.2-flash")
VEO_FLOW = CATALOG.get("veo-3.1-fast")


@pytest.mark.parametrize(("requested", "model", "has_key", "flow_on", "expected"), [
    ("auto", OMNI, True, True, "api"),
    ("auto", OMNI, True, False, "api"),
    ("auto", OMNI, False, True, "flow"),  # no usable key: Flow
    ("auto", VEO_FLOW, True, True, "flow"),  # the model lives only in Flow
    ("api", OMNI, True, True, "api"),
    ("flow", OMNI, True, True, "flow"),  # asked for explicitly, even with a key
])
def test_choose_backend(requested: str, model: catalogmod.Model, has_key: bool, flow_on: bool,
                        expected: str) -> None:
    assert jobs.choose_backend(requested, model, has_usable_key=has_key,
                               flow_enabled=flow_on) == expected


@pytest.mark.parametrize(("requested", "model", "has_key", "flow_on", "code"), [
    ("auto", OMNI, False, False, "no_backend"),
    ("auto", OMNI_API_ONLY, False, True, "no_api_key"),
    ("api", OMNI, False, True, "no_api_key"),
    ("api", VEO_FLOW, True, True, "invalid_field"),
    ("flow", OMNI, True, False, "no_backend"),
    ("flow", OMNI_API_ONLY, True, True, "invalid_field"),
])
def test_choose_backend_refusals(requested: str, model: catalogmod.Model, has_key: bool,
                                 flow_on: bool, code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        jobs.choose_backend(requested, model, has_usable_key=has_key, flow_enabled=flow_on)
    assert caught.value.code == code and caught.value.details == {"field": "backend"}


# ---- the failure policy ------------------------------------------------------------------------

def test_causes_that_clear_by_themselves_pause_whatever_the_attempts() -> None:
    for attempts in (0, 1, 5, 99):
        assert jobs.after_error(LoginRequired("login"), attempts=attempts, max_attempts=5) == \
            jobs.Pause(jobs.PausedReason.FLOW_NEEDS_AUTH)
        assert jobs.after_error(AccountCooling("slow down", kind="rate_limited"),
                                attempts=attempts, max_attempts=5) == \
            jobs.Pause(jobs.PausedReason.FLOW_RATE_LIMITED)
        assert jobs.after_error(AllKeysCooling("all cooling", until=1234.5),
                                attempts=attempts, max_attempts=5) == \
            jobs.Pause(jobs.PausedReason.API_KEYS_EXHAUSTED, 1234.5)


def test_retryable_errors_retry_with_growing_backoff_until_tries_run_out() -> None:
    exc = GenerationFailed("blip", code="server_error", retryable=True)
    defers = []
    for attempts in range(1, 5):
        decision = jobs.after_error(exc, attempts=attempts, max_attempts=5)
        assert isinstance(decision, jobs.Retry)
        assert decision.error == ErrorInfo(code="server_error", message="blip", retryable=True)
        defers.append(decision.defer)
    assert defers == list(jobs.RETRY_BACKOFF)
    # a run that never got as far as counting (attempts 0) waits the first step
    assert jobs.after_error(exc, attempts=0, max_attempts=5) == \
        jobs.Retry(jobs.RETRY_BACKOFF[0], jobs.error_info(exc))
    # beyond the table the last step repeats
    long = jobs.after_error(exc, attempts=7, max_attempts=10)
    assert isinstance(long, jobs.Retry) and long.defer == jobs.RETRY_BACKOFF[-1]
    last = jobs.after_error(exc, attempts=5, max_attempts=5)
    assert last == jobs.Fail(ErrorInfo(code="server_error", message="blip", retryable=True))


@pytest.mark.parametrize("exc", [
    GenerationFailed("refused", code="safety_filtered", retryable=False),
    ModelRetired("gone", model="veo-2.0-generate-001", replacement="gemini-omni-1.1-flash"),
    NoUsableKey("no key"),
])
def test_permanent_errors_fail_at_once(exc: Exception) -> None:
    decision = jobs.after_error(exc, attempts=1, max_attempts=5)
    assert isinstance(decision, jobs.Fail)
    assert decision.error == jobs.error_info(exc)


def test_error_info_keeps_details_and_hides_foreign_texts() -> None:
    retired = jobs.error_info(ModelRetired("gone", model="m", replacement="r"))
    assert retired.code == "model_retired" and retired.retryable is False
    assert retired.details == {"model": "m", "replacement": "r"}
    crash = jobs.error_info(RuntimeError("AIza-something-secret in a traceback"))
    assert crash == ErrorInfo(code="internal", message="internal error: RuntimeError",
                              retryable=True)
    # an unexpected crash is retried like any transient failure
    assert isinstance(jobs.after_error(RuntimeError("x"), attempts=1, max_attempts=5),
                      jobs.Retry)
    # a key problem that escaped the pool is retryable (another key may work next run)
    assert isinstance(jobs.after_error(KeyProblem("429", invalid=False), attempts=1,
                                       max_attempts=5), jobs.Retry)


# ---- the final video's options -----------------------------------------------------------------

def test_final_options_defaults_and_bounds() -> None:
    d = jobs.final_options(jobs.FinalSpec())
    assert (d.transition, d.crossfade_seconds, d.trim_start_frames, d.trim_end_frames,
            d.loudnorm) == ("cut", 0.5, 0, 0, False)
    ok = jobs.final_options(jobs.FinalSpec(transition="crossfade", crossfade_seconds=3.0,
                                           trim_start_frames=120, trim_end_frames=0,
                                           loudnorm=True))
    assert (ok.transition, ok.crossfade_seconds, ok.trim_start_frames, ok.loudnorm) == \
        ("crossfade", 3.0, 120, True)
    for spec, field in [(jobs.FinalSpec(crossfade_seconds=0.09), "final.crossfade_seconds"),
                        (jobs.FinalSpec(crossfade_seconds=3.01), "final.crossfade_seconds"),
                        (jobs.FinalSpec(trim_start_frames=121), "final.trim_start_frames"),
                        (jobs.FinalSpec(trim_end_frames=-1), "final.trim_end_frames")]:
        with pytest.raises(InvalidRequest) as caught:
            jobs.final_options(spec)
        assert caught.value.details == {"field": field}


def test_final_options_come_through_validate() -> None:
    v = valid({"clips": [{"prompt": "a"}, {"prompt": "b"}],
               "final": {"transition": "crossfade", "crossfade_seconds": 1.0}})
    assert v.final is not None and v.final.transition == "crossfade"


# ---- transitions -----------------------------------------------------------------------------

def test_transitions() -> None:
    S = jobs.JobStatus
    assert jobs.can_move("queued", "running") and jobs.can_move("running", "queued")
    assert not jobs.can_move("succeeded", "running")
    assert not jobs.can_move("queued", "succeeded")  # only a run finishes a job
    for terminal in jobs.TERMINAL:
        assert jobs.TRANSITIONS[terminal] == {S.QUEUED}  # retry, redo or rebuild only
    assert {S.QUEUED, S.RUNNING, S.PAUSED} == jobs.CANCELABLE
    assert set(jobs.TRANSITIONS) == set(S)
