"""From clips to a film, end to end on the API backend: the stitched final (cut and crossfade)
holds the selected variants in order, continuity hands each clip the previous clip's last
frame, select and redo change only what they should, and a worker killed while building the
final finishes it after a restart.

The fake's videos are solid colours derived from the request that made them, so a frame taken
from the middle of each segment of the final tells which output it came from."""

from __future__ import annotations

import asyncio
import hashlib
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    Harness,
    add_key,
    colour_at,
    fetch_output,
    near,
    new_key,
    spawn_worker,
    worker_env,
)
from veo import media
from veo.sandbox import mp4
from veo.sandbox.gemini import FakeGemini


async def _job(h: Harness, token: str, body: dict[str, Any], timeout: float = 60,
               ) -> dict[str, Any]:
    resp = await h.http.post("/api/jobs", json=body, headers=h.auth(token))
    assert resp.status_code == 201, resp.text
    return await h.wait_job(token, resp.json()["id"], {"succeeded", "failed"}, timeout=timeout)


async def _final_ready(h: Harness, token: str, job_id: str, timeout: float = 60,
                       ) -> dict[str, Any]:
    for _ in range(int(timeout / 0.1)):
        body = (await h.http.get(f"/api/jobs/{job_id}", headers=h.auth(token))).json()
        if body["status"] in ("succeeded", "failed") and body["final"] and \
                body["final"]["status"] in ("succeeded", "failed"):
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the final of {job_id} did not finish: {body}")


def _path(h: Harness, key: str) -> Path:
    return h.svc.storage.path(key)  # type: ignore[attr-defined,no-any-return]


async def _look(h: Harness, token: str, output: dict[str, Any]) -> tuple[int, int, int]:
    ident = mp4.identify(await fetch_output(h, token, output["url"]))
    assert ident is not None
    return mp4.look(ident)[0]


async def _segment_colours(h: Harness, job_id: str, middles: list[float],
                           ) -> list[tuple[int, int, int]]:
    return [await colour_at(_path(h, f"outputs/{job_id}/final.mp4"), t) for t in middles]


def _selected(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [next(o for o in c["outputs"] if o["selected"]) for c in job["clips"]]


@pytest.mark.parametrize("transition", ["cut", "crossfade"])
async def test_final_holds_the_selected_variants_in_order(harness: Harness, transition: str,
                                                          fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user(f"film-{transition}")
    await add_key(h, token, new_key())
    await h.start_worker()
    final: dict[str, Any] = {"transition": transition}
    if transition == "crossfade":
        final["crossfade_seconds"] = 0.5
    done = await _job(h, token, {"clips": [{"prompt": f"shot {i}"} for i in range(3)],
                                 "duration_seconds": 3, "number_of_videos": 2,
                                 "final": final})
    assert done["status"] == "succeeded", done
    body = await _final_ready(h, token, done["id"])
    fin = body["final"]
    assert fin["status"] == "succeeded", fin
    assert fin["transition"] == transition
    expected = 9.0 if transition == "cut" else 9.0 - 2 * 0.5
    assert fin["duration_seconds"] == pytest.approx(expected, abs=0.15)
    data = await fetch_output(h, token, fin["url"])
    assert hashlib.sha256(data).hexdigest() == fin["sha256"] and len(data) == fin["size"]
    assert (await fetch_output(h, token, fin["poster_url"]))[:3] == b"\xff\xd8\xff"
    probe = await media.probe(_path(h, f"outputs/{done['id']}/final.mp4"))
    assert probe.audio is not None  # the clips' audio is kept
    # each segment is the selected variant (variant 0 until the user picks), in clip order
    step = 3.0 if transition == "cut" else 2.5
    middles = [1.25 + i * step for i in range(3)]
    wanted = [await _look(h, token, o) for o in _selected(body)]
    got = await _segment_colours(h, done["id"], middles)
    assert all(near(g, w) for g, w in zip(got, wanted, strict=True)), (got, wanted)
    # and every output has a JPEG poster
    for out in body["outputs"]:
        assert (await fetch_output(h, token, out["poster_url"]))[:3] == b"\xff\xd8\xff"


async def test_select_then_rebuild_changes_only_that_segment(harness: Harness) -> None:
    h = harness
    _, token = await h.user("select")
    await add_key(h, token, new_key())
    await h.start_worker()
    done = await _job(h, token, {"clips": [{"prompt": f"take {i}"} for i in range(3)],
                                 "duration_seconds": 3, "number_of_videos": 2,
                                 "final": {"transition": "cut"}})
    job_id = done["id"]
    first = await _final_ready(h, token, job_id)
    before_outputs = {o["id"]: o["sha256"] for o in first["outputs"]}
    resp = await h.http.post(f"/api/jobs/{job_id}/clips/1/select", json={"variant": 1},
                             headers=h.auth(token))
    assert resp.status_code == 200, resp.text
    assert resp.json()["clips"][1]["selected"] == 1
    bad = await h.http.post(f"/api/jobs/{job_id}/clips/1/select", json={"variant": 7},
                            headers=h.auth(token))
    assert bad.status_code == 404
    resp = await h.http.post(f"/api/jobs/{job_id}/final", json={"transition": "cut"},
                             headers=h.auth(token))
    assert resp.status_code == 202, resp.text
    second = await _final_ready(h, token, job_id)
    assert second["final"]["status"] == "succeeded"
    assert second["final"]["sha256"] != first["final"]["sha256"]
    # no clip was generated again; the outputs are the same files
    assert {o["id"]: o["sha256"] for o in second["outputs"]} == before_outputs
    wanted = [await _look(h, token, o) for o in _selected(second)]
    got = await _segment_colours(h, job_id, [1.5, 4.5, 7.5])
    assert all(near(g, w) for g, w in zip(got, wanted, strict=True)), (got, wanted)
    chosen = [o["variant"] for o in _selected(second)]
    assert chosen == [0, 1, 0]


async def test_redo_replaces_one_clip_and_rebuilds(harness: Harness,
                                                   fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("redo")
    await add_key(h, token, new_key())
    await h.start_worker()
    done = await _job(h, token, {"clips": [{"prompt": f"part {i}"} for i in range(3)],
                                 "duration_seconds": 3, "final": {"transition": "cut"}})
    job_id = done["id"]
    first = await _final_ready(h, token, job_id)
    old = {o["clip"]: o for o in first["outputs"]}
    creates = len(fake_gemini.creates())
    resp = await h.http.post(f"/api/jobs/{job_id}/clips/1/redo", json={"prompt": "part one, "
                                                                       "but at night"},
                             headers=h.auth(token))
    assert resp.status_code == 202, resp.text
    again = await _final_ready(h, token, job_id)
    assert again["status"] == "succeeded" and again["final"]["status"] == "succeeded"
    assert len(fake_gemini.creates()) == creates + 1  # only the redone clip was generated
    new = {o["clip"]: o for o in again["outputs"]}
    assert new[0]["sha256"] == old[0]["sha256"] and new[2]["sha256"] == old[2]["sha256"]
    assert new[1]["sha256"] != old[1]["sha256"]
    assert again["clips"][1]["prompt"] == "part one, but at night"
    ident = mp4.identify(await fetch_output(h, token, new[1]["url"]))
    assert ident is not None and ident["prompt"] == "part one, but at night"
    wanted = [await _look(h, token, new[i]) for i in range(3)]
    got = await _segment_colours(h, job_id, [1.5, 4.5, 7.5])
    assert all(near(g, w) for g, w in zip(got, wanted, strict=True)), (got, wanted)
    # a job still at work cannot be redone
    busy = await h.http.post("/api/jobs", json={"prompt": "busy [slow:5]"},
                             headers=h.auth(token))
    resp = await h.http.post(f"/api/jobs/{busy.json()['id']}/clips/0/redo", json={},
                             headers=h.auth(token))
    assert resp.status_code == 409


async def test_continuity_hands_each_clip_the_previous_last_frame(
        harness: Harness, fake_gemini: FakeGemini) -> None:
    h = harness
    _, token = await h.user("chain")
    await add_key(h, token, new_key())
    await h.start_worker()
    done = await _job(h, token, {"clips": [{"prompt": f"beat {i}"} for i in range(3)],
                                 "duration_seconds": 3, "continuity": "chain",
                                 "number_of_videos": 2})
    assert done["status"] == "succeeded", done
    assert done["continuity"] == "chain"
    outs = {(o["clip"], o["variant"]): o for o in done["outputs"]}
    for n in (1, 2):
        prev = _path(h, f"outputs/{done['id']}/{n - 1}-0.mp4")  # variant 0 is selected
        expected = hashlib.sha256(await media.last_frame(prev)).hexdigest()
        for variant in (0, 1):
            ident = mp4.identify(await fetch_output(h, token, outs[(n, variant)]["url"]))
            assert ident is not None and ident["task"] == "image_to_video"
            assert ident["first_frame_sha256"] == expected
    first_ident = mp4.identify(await fetch_output(h, token, outs[(0, 0)]["url"]))
    assert first_ident is not None and first_ident["first_frame_sha256"] is None
    # clips ran in order: each create came after the previous clip's videos existed
    prompts = [c["body"]["input"] if isinstance(c["body"]["input"], str) else
               c["body"]["input"][0]["content"][0]["text"] for c in fake_gemini.creates()]
    order = [int(p.split()[-1]) for p in prompts]
    assert order == sorted(order)


async def test_worker_killed_mid_final_finishes_after_restart(
        harness: Harness, fake_gemini: FakeGemini, tmp_path: Path) -> None:
    h = harness
    _, token = await h.user("crash-final")
    await add_key(h, token, new_key())
    env = worker_env(h, GEMINI_BASE_URL=fake_gemini.url, FLOW_BACKEND_ENABLED="false")
    log = tmp_path / "worker.log"
    worker = await spawn_worker(env, log, "veo.worker.ApiSettings")
    # long crossfaded clips make the re-encode take a while: time to kill the worker in it
    resp = await h.http.post("/api/jobs", headers=h.auth(token), json={
        "clips": [{"prompt": f"long {i}"} for i in range(8)], "duration_seconds": 10,
        "final": {"transition": "crossfade", "crossfade_seconds": 1.0, "loudnorm": True}})
    job_id = resp.json()["id"]
    for _ in range(1200):
        state = await h.svc.db.pool.fetchval("SELECT status FROM finals WHERE job_id = $1",
                                             job_id)
        if state == "running":
            break
        await asyncio.sleep(0.05)
    assert state == "running", log.read_text()[-2000:]
    worker.send_signal(signal.SIGKILL)
    await worker.wait()
    creates = len(fake_gemini.creates())
    worker = await spawn_worker(env, log, "veo.worker.ApiSettings")
    try:
        body = await _final_ready(h, token, job_id, timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 30)
    assert body["status"] == "succeeded" and body["final"]["status"] == "succeeded", body
    assert body["final"]["duration_seconds"] == pytest.approx(80 - 7, abs=0.3)
    assert len(fake_gemini.creates()) == creates  # no clip was paid for twice
    assert body["attempts"] == 2
    # nothing staged was left behind
    assert await h.svc.storage.list(f"staging/{job_id}/") == []


async def test_links_stale_final_and_chain_end_frames(harness: Harness) -> None:
    h = harness
    _, token = await h.user("links")
    await add_key(h, token, new_key())
    me = (await h.http.get("/api/me", headers=h.auth(token))).json()
    assert me["usable_keys"] >= 1 and me["auto_backend"] == "api"
    await h.start_worker()
    red = await h.http.post("/api/uploads", files={"file": ("r.png", _png(), "image/png")},
                            headers=h.auth(token))
    # with chain, a later clip's start frame is implicit: an end frame alone is fine
    done = await _job(h, token, {
        "clips": [{"prompt": "a"}, {"prompt": "b", "last_frame": red.json()["id"]}],
        "continuity": "chain", "duration_seconds": 3, "number_of_videos": 2,
        "final": {"transition": "crossfade", "crossfade_seconds": 0.4}})
    body = await _final_ready(h, token, done["id"])
    fin = body["final"]
    assert fin["crossfade_seconds"] == 0.4 and fin["transition"] == "crossfade"
    assert fin["stale"] is False
    # a link needs no token, streams with Range, and names nothing once expired or forged
    link = (await h.http.get(f"/api/jobs/{done['id']}/final/link",
                             headers=h.auth(token))).json()
    assert token not in link["url"]
    whole = await h.http.get(link["url"])
    assert whole.status_code == 200 and hashlib.sha256(whole.content).hexdigest() == fin["sha256"]
    part = await h.http.get(link["url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == whole.content[:100]
    forged = link["url"].rsplit(".", 1)[0] + ".AAAA"
    assert (await h.http.get(forged)).status_code == 404
    out = body["outputs"][0]
    olink = await h.http.get(out["url"] + "/link", headers=h.auth(token))
    assert olink.status_code == 200
    assert (await h.http.get(olink.json()["url"])).content == await fetch_output(
        h, token, out["url"])
    # served files tell caches to ask again (a redo replaces bytes under the same URL)
    served = await h.http.get(out["url"], headers=h.auth(token))
    assert served.headers["cache-control"] == "private, no-cache"
    # a pick the final does not hold yet makes it stale
    await h.http.post(f"/api/jobs/{done['id']}/clips/0/select", json={"variant": 1},
                      headers=h.auth(token))
    body = (await h.http.get(f"/api/jobs/{done['id']}", headers=h.auth(token))).json()
    assert body["final"]["stale"] is True


def _png() -> bytes:
    from tests.harness import png

    return png((200, 30, 30))
