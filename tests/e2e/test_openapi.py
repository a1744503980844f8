"""The OpenAPI document is the whole contract: it is valid 3.1, its paths and methods are the
app's routes exactly, and schemathesis, with every check it has and stateful links from created
jobs, keys, uploads and users, finds no schema-valid request the server refuses, no schema-invalid
one it accepts, no `Allow` mismatch and no 5xx against the real service (PostgreSQL, Redis,
storage). Also `Prefer: wait=N` on job creation, against a running worker."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Mount, Route

from tests.harness import Harness, add_key, new_key
from veo.sandbox.gemini import FakeGemini
from veo.web import app as webapp
from veo.web import openapi

ROOT = Path(__file__).resolve().parents[2]
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
# Routes that are not the API: the web page and its static files.
NOT_API = {"/", "/static"}


async def test_document_is_valid_openapi_31(harness: Harness) -> None:
    doc = (await harness.http.get("/api/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    schemas = doc["components"]["schemas"]
    job = schemas["JobRequest"]
    assert job["additionalProperties"] is False  # unknown fields are refused, as documented
    # the constraints the server enforces are stated where the types are
    clip = schemas["ClipSpec"]["properties"]
    assert clip["prompt"]["maxLength"] == 4000 and clip["prompt"]["minLength"] == 1
    assert clip["first_frame"]["anyOf"][0]["pattern"] == "^(?:upl_[0-9a-f]{24})$"
    assert clip["extend_from"]["anyOf"][0]["pattern"] == "^(?:out_[0-9a-f]{24})$"
    assert clip["reference_images"]["anyOf"][0]["maxItems"] == 3
    assert job["properties"]["clips"]["anyOf"][0]["maxItems"] == 50
    assert job["properties"]["number_of_videos"]["maximum"] == 4
    final = schemas["FinalOptions"]["properties"]
    assert (final["crossfade_seconds"]["minimum"], final["crossfade_seconds"]["maximum"]) == \
        (0.1, 3.0)
    assert schemas["KeyIn"]["properties"]["key"]["minLength"] == 10
    assert schemas["StorageState"]["required"] == ["cookies"]
    assert set(schemas["Cookie"]["required"]) == {"name", "value", "domain"}
    # the model rules of this deployment (Flow off in the harness): Omni on the API backend
    variants = {v["title"]: v for v in job["allOf"][2]["anyOf"]}
    omni = variants["gemini-omni-1.1-flash on api"]["properties"]
    assert omni["duration_seconds"]["enum"] == [3, 4, 5, 6, 7, 8, 9, 10, None]
    assert not any("on flow" in t for t in variants)
    ops = doc["paths"]
    assert ops["/api/jobs"]["get"]["parameters"][1]["schema"]["pattern"] == \
        "^[A-Za-z0-9_-]{27}$"
    created = ops["/api/jobs"]["post"]["responses"]["201"]
    assert created["headers"]["Location"]["required"] is True
    assert created["links"]["GetJob"]["parameters"] == {"job_id": "$response.body#/id"}
    upload = ops["/api/uploads"]["post"]["responses"]
    assert {"201", "413", "415"} <= set(upload)
    assert "302" in ops["/api/jobs/{job_id}/outputs/{output_id}"]["get"]["responses"]
    # every operation that needs a token says what a missing one gets
    for path, item in ops.items():
        for method, op in item.items():
            if op.get("security"):
                assert "401" in op["responses"], (method, path)


def test_document_paths_and_methods_are_the_apps_routes() -> None:
    """What the document lists per path is exactly what the app routes (HEAD comes with GET in
    Starlette and is not listed)."""
    routed: dict[str, set[str]] = {}
    for route in webapp.routes():
        if isinstance(route, Mount) or route.path in NOT_API:
            assert isinstance(route, Mount | Route) and route.path in NOT_API, route
            continue
        assert isinstance(route, Route) and route.methods, f"{route.path} takes any method"
        assert route.path not in routed, f"{route.path} is split over several routes"
        routed[route.path] = {m.lower() for m in route.methods} - {"head"}
    doc = openapi.document()
    documented = {path: set(item) & HTTP_METHODS for path, item in doc["paths"].items()}
    assert documented == routed


async def test_a_wrong_method_is_a_405_naming_the_documented_ones(harness: Harness) -> None:
    h = harness
    _, token = await h.user("allow")
    doc = (await h.http.get("/api/openapi.json")).json()
    for path, item in doc["paths"].items():
        concrete = path.replace("{job_id}", "job_" + "0" * 24).replace("{index}", "0") \
            .replace("{output_id}", "out_" + "0" * 24).replace("{key_id}", "key_" + "0" * 24) \
            .replace("{user_id}", "usr_" + "0" * 24).replace("{token}", "x.1.y")
        resp = await h.http.request("PATCH", concrete, headers=h.auth(token))
        assert resp.status_code == 405, (path, resp.status_code)
        allowed = {m.strip().lower() for m in resp.headers["allow"].split(",")} - {"head"}
        assert allowed == set(item) & HTTP_METHODS, (path, resp.headers["allow"])


def _st_config(tmp: Path, owner: str, other: str) -> None:
    """schemathesis.toml for the run. Every check is on; what each needs, it gets here:

    - ``webhook_url``: the server resolves its host at creation (a fact about DNS, not about the
      request's shape, stated in the document), so the run sends one that resolves, on loopback
      (the harness allows private webhook addresses). Its shape is checked by the unit of
      ``veo.jobs`` and tests/e2e/test_delivery.py.
    - ``object_level_authorization`` replays an owner's reads as another user: two identities.
    - stateful links are this document's own: inference (``dependency-analysis``) also links
      ``GET /api/keys`` and ``GET /api/me`` to ``DELETE /api/keys/{id}`` and
      ``DELETE /api/admin/users/{id}/tokens``, so the run would delete its own key and revoke
      its own token halfway and test nothing after that; ``location-headers`` links a new job's
      `Location` to every route under it, including its final video, which a new job does not
      have (404).
    - ``max-stream-events``: an event stream of a job that never ends (no worker runs here) is
      read for its first event, which is checked against the document.
    """
    (tmp / "wfc.json").write_text(json.dumps({"auth": [
        {"name": "owner", "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {owner}"}]},
        {"name": "other", "fixedHeaders": [{"name": "Authorization",
                                            "value": f"Bearer {other}"}]}]}))
    (tmp / "schemathesis.toml").write_text("""\
seed = 1
workers = 1
request-timeout = 10
max-stream-events = 1

[generation]
max-examples = 40

[checks]
enabled = true

[parameters]
"body.webhook_url" = "http://127.0.0.1:9/hook"

[phases.stateful]
enabled = true
max-steps = 10

[phases.stateful.inference]
algorithms = []

[auth.wfc]
path = "wfc.json"
user = "owner"
peers = ["owner", "other"]
""")


async def test_schemathesis_finds_nothing_with_every_check(harness: Harness,
                                                          tmp_path: Path) -> None:
    h = harness
    _, owner = await h.user("fuzzer", admin=True)  # admin: the admin routes are fuzzed too
    _, other = await h.user("fuzzer-peer")
    await add_key(h, owner, new_key())  # jobs go to the API backend (Flow is off here)
    _st_config(tmp_path, owner, other)
    st = shutil.which("st") or str(Path(sys.executable).parent / "st")
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        st, "run", f"{h.base_url}/api/openapi.json", "--checks", "all", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.st_hooks", "PYTHONPATH": str(ROOT)})
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    text = out.decode(errors="replace")
    (tmp_path / "st.txt").write_text(text)
    assert proc.returncode == 0, text[-6000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in text, text[-3000:]  # every phase ran and passed
    assert " generated, " in text and " passed" in text
    # the links from created jobs, keys, uploads and users were followed
    links = text.split("API Links:", 1)[1].split("\n", 1)[0]
    covered = int(links.split("covered", 1)[0])
    assert covered >= 8, links
    assert time.monotonic() - started < 240


# ---- Prefer: wait=N ---------------------------------------------------------------------------

async def test_prefer_wait_returns_the_finished_job(harness: Harness,
                                                    fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("patient")
    await add_key(h, token, new_key())
    await h.start_worker()
    fake_gemini.delay = 0.5
    started = time.monotonic()
    resp = await h.http.post("/api/jobs", json={"prompt": "a quick one", "duration_seconds": 3},
                             headers={**h.auth(token), "Prefer": "wait=20"})
    took = time.monotonic() - started
    assert resp.status_code == 201, resp.text
    job: dict[str, Any] = resp.json()
    assert job["status"] == "succeeded" and job["outputs"], job
    assert resp.headers["preference-applied"] == "wait=20"
    assert resp.headers["location"] == f"/api/jobs/{job['id']}"
    assert took < 20  # answered when the job ended, not when the wait ran out


async def test_prefer_wait_returns_the_job_as_it_is_when_time_runs_out(
        harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("impatient")
    await add_key(h, token, new_key())
    await h.start_worker()
    fake_gemini.delay = 30
    started = time.monotonic()
    resp = await h.http.post("/api/jobs", json={"prompt": "a slow one"},
                             headers={**h.auth(token), "Prefer": "respond-async, wait=1"})
    took = time.monotonic() - started
    assert resp.status_code == 201, resp.text
    job: dict[str, Any] = resp.json()
    assert job["status"] in {"queued", "running"}, job
    assert resp.headers["preference-applied"] == "wait=1"
    assert resp.headers["location"] == f"/api/jobs/{job['id']}"
    assert 1 <= took < 10
    # without Prefer the create answers at once
    started = time.monotonic()
    resp = await h.http.post("/api/jobs", json={"prompt": "no waiting"}, headers=h.auth(token))
    assert resp.status_code == 201 and "preference-applied" not in resp.headers
    assert resp.json()["status"] in {"queued", "running"}
    assert time.monotonic() - started < 1


# ---- server behaviours the document promises --------------------------------------------------

@pytest.mark.parametrize("cursor", ["A" * 27, "_" * 27, "zzzzzzzzzzzzzzzzzzzzzzzzzzz"])
async def test_any_well_formed_cursor_is_a_position(harness: Harness, cursor: str) -> None:
    h = harness
    _, token = await h.user(f"pager-{cursor[0]}")
    resp = await h.http.get(f"/api/jobs?cursor={cursor}", headers=h.auth(token))
    assert resp.status_code == 200, resp.text


async def test_documented_integers_may_be_spelled_as_floats(harness: Harness) -> None:
    """JSON Schema's integer 2.0 is an integer: the server takes it."""
    h = harness
    _, token = await h.user("floaty")
    await add_key(h, token, new_key())
    resp = await h.http.post("/api/jobs", headers=h.auth(token),
                             content=b'{"prompt": "x", "number_of_videos": 2.0}')
    assert resp.status_code == 201 and resp.json()["number_of_videos"] == 2, resp.text
    resp = await h.http.post("/api/jobs", headers=h.auth(token),
                             content=b'{"prompt": "x", "number_of_videos": 2.5}')
    assert resp.status_code == 422
    assert resp.json()["error"]["details"]["field"] == "number_of_videos"
