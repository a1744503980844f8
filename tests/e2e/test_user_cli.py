"""The user commands as people and scripts run them: real `veo` subprocesses over real HTTP
against the web app, an in-process worker and the fake Gemini API. The subprocesses get only
VEO_URL and VEO_TOKEN: no database, no secret."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import pty
import re
import signal
import struct
import sys
import termios
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    CHROMIUM,
    Harness,
    add_key,
    eventually,
    free_port,
    make_env,
    new_key,
    png,
    running,
)
from veo.client import AsyncClient, Client, InvalidRequest, NotFound, Unauthorized
from veo.sandbox import mp4
from veo.sandbox.gemini import FakeGemini

VEO = str(Path(sys.executable).parent / "veo")


@pytest.fixture
async def service(harness: Harness) -> AsyncIterator[tuple[Harness, str]]:
    """The running service, a user with a Gemini key (so jobs use the API backend), a worker."""
    _, token = await harness.user(f"cli-{time.monotonic_ns()}")
    await add_key(harness, token, new_key())
    await harness.start_worker()
    yield harness, token


def user_env(h: Harness, token: str, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "VEO_URL": h.base_url,
            "VEO_TOKEN": token, **extra}


async def veo(args: list[str], env: dict[str, str], cwd: Path | None = None,
              timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        VEO, *args, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def my_jobs(h: Harness, token: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        body = (await h.http.get("/api/jobs", params=params, headers=h.auth(token))).json()
        jobs += body["data"]
        if not body["has_more"]:
            return jobs
        cursor = body["next_cursor"]


# ---- generate --------------------------------------------------------------------------------

async def test_generate_with_frames_and_variants(service: tuple[Harness, str],
                                                 tmp_path: Path) -> None:
    h, token = service
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    (tmp_path / "red.png").write_bytes(red)
    (tmp_path / "blue.png").write_bytes(blue)
    code, out, err = await veo(["generate", "a red kite over a blue sea",
                                "--first-frame", "red.png", "--last-frame", "blue.png",
                                "--variants", "2", "--out", "videos"],
                               user_env(h, token), cwd=tmp_path)
    assert code == 0, err
    paths = out.split()
    (job,) = await my_jobs(h, token)
    assert job["status"] == "succeeded" and job["number_of_videos"] == 2
    assert paths == [f"videos/{job['id']}-0-0.mp4", f"videos/{job['id']}-0-1.mp4"]
    by_variant = {o["variant"]: o for o in job["outputs"]}
    for variant, path in enumerate(paths):
        data = (tmp_path / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == by_variant[variant]["sha256"]
        ident = mp4.identify(data)
        assert ident is not None and ident["prompt"] == "a red kite over a blue sea"
        # the frames reached the model byte for byte
        assert ident["first_frame_sha256"] == hashlib.sha256(red).hexdigest()
        assert ident["last_frame_sha256"] == hashlib.sha256(blue).hexdigest()
    assert "uploaded red.png" in err and job["id"] in err
    assert not list((tmp_path / "videos").glob("*.part"))


async def test_generate_json_for_scripts(service: tuple[Harness, str], tmp_path: Path) -> None:
    h, token = service
    code, out, err = await veo(["generate", "a lighthouse", "--json", "--out", str(tmp_path)],
                               user_env(h, token))
    assert code == 0, err
    doc = json.loads(out)  # stdout holds exactly one JSON document
    assert doc["job"]["status"] == "succeeded"
    (path,) = doc["files"]
    assert Path(path).is_file() and Path(path).parent == tmp_path


async def test_generate_failed_job_exits_1(service: tuple[Harness, str],
                                           fake_gemini: FakeGemini, tmp_path: Path) -> None:
    h, token = service
    code, out, err = await veo(["generate", "something [safety]", "--out", str(tmp_path)],
                               user_env(h, token))
    assert code == 1, (out, err)
    assert "failed" in err and out == ""
    assert not list(tmp_path.iterdir())


# ---- jobs ------------------------------------------------------------------------------------

async def test_jobs_list_show_cancel_retry_download_delete(service: tuple[Harness, str],
                                                          tmp_path: Path) -> None:
    h, token = service
    env = user_env(h, token)
    quick = (await h.http.post("/api/jobs", json={"prompt": "quick one"},
                               headers=h.auth(token))).json()["id"]
    slow = (await h.http.post("/api/jobs", json={"prompt": "slow one [slow:60]"},
                              headers=h.auth(token))).json()["id"]
    await h.wait_job(token, quick, {"succeeded"})

    code, out, err = await veo(["jobs", "list"], env)
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "PROGRESS"]
    assert [ln.split()[0] for ln in lines] == [slow, quick]  # newest first
    code, out, _ = await veo(["jobs", "list", "--json", "--status", "succeeded"], env)
    assert [j["id"] for j in json.loads(out)] == [quick]
    code, out, _ = await veo(["jobs", "list", "--limit", "1"], env)
    assert len(out.splitlines()) == 2

    code, out, _ = await veo(["jobs", "show", quick], env)
    assert code == 0 and f"job        {quick}" in out and "succeeded" in out
    assert "variant 0" in out
    code, out, _ = await veo(["jobs", "show", quick, "--json"], env)
    assert json.loads(out)["outputs"][0]["sha256"]

    code, out, err = await veo(["jobs", "cancel", slow], env)
    assert code == 0 and out.strip() == f"job {slow}: canceled", err
    code, out, err = await veo(["jobs", "cancel", slow], env)
    assert code == 3 and "409" in err and err.startswith("veo: ")
    code, out, err = await veo(["jobs", "retry", slow], env)
    assert code == 0 and slow in out, err
    code, out, err = await veo(["jobs", "download", slow, "--no-wait"], env)
    assert code == 1 and "has not finished" in err
    await veo(["jobs", "cancel", slow], env)

    code, out, err = await veo(["jobs", "download", quick, "--out", str(tmp_path)], env)
    assert code == 0, err
    assert out.split() == [str(tmp_path / f"{quick}-0-0.mp4")]
    code, out, err = await veo(["jobs", "delete", slow], env)
    assert code == 0 and out.strip() == f"deleted job {slow}"
    assert [j["id"] for j in await my_jobs(h, token)] == [quick]


async def test_jobs_download_waits_for_the_job(service: tuple[Harness, str],
                                               tmp_path: Path) -> None:
    h, token = service
    job = (await h.http.post("/api/jobs", json={"prompt": "soon [slow:1.5]"},
                             headers=h.auth(token))).json()["id"]
    code, out, err = await veo(["jobs", "download", job, "--out", str(tmp_path)],
                               user_env(h, token))
    assert code == 0, err
    assert out.split() == [str(tmp_path / f"{job}-0-0.mp4")]
    assert f"{job}: running" in err or f"{job}: queued" in err  # plain progress lines


# ---- errors ----------------------------------------------------------------------------------

async def test_api_errors_are_clear_on_the_terminal(service: tuple[Harness, str],
                                                    tmp_path: Path) -> None:
    h, token = service
    env = user_env(h, token)
    code, out, err = await veo(["generate", "x", "--duration", "99"], env)
    assert code == 3 and out == ""
    assert err.startswith("veo: ") and "duration_seconds" in err and "422" in err, err
    code, out, err = await veo(["generate", "x", "--duration", "99", "--json"], env)
    doc = json.loads(out)
    assert code == 3 and doc["error"]["status"] == 422
    assert doc["error"]["details"]["field"] == "duration_seconds"

    code, out, err = await veo(["jobs", "list"], {**env, "VEO_TOKEN": "veo_not-a-real-token"})
    assert code == 4 and "401" in err and "VEO_TOKEN" in err, err
    code, out, err = await veo(["jobs", "list"], {k: v for k, v in env.items()
                                                  if k != "VEO_TOKEN"})
    assert code == 4 and "VEO_TOKEN" in err

    code, out, err = await veo(["jobs", "show", "job_doesnotexist"], env)
    assert code == 3 and "404" in err and "job_doesnotexist" in err, err

    code, out, err = await veo(["generate", "x", "--first-frame", "missing.png"], env,
                               cwd=tmp_path)
    assert code == 2 and "missing.png" in err
    assert await my_jobs(h, token) == []  # nothing was submitted by any of these


async def test_unreachable_service(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "VEO_URL": f"http://127.0.0.1:{free_port()}",
           "VEO_TOKEN": "veo_x"}
    code, _, err = await veo(["jobs", "list"], env)
    assert code == 5 and "cannot reach" in err and "VEO_URL" in err


async def test_api_errors_as_exceptions(service: tuple[Harness, str]) -> None:
    h, token = service
    async with AsyncClient(h.base_url, token) as client:
        with pytest.raises(InvalidRequest) as bad:
            await client.create_job({"prompt": "x", "duration_seconds": 99})
        assert bad.value.status == 422 and bad.value.field == "duration_seconds"
        assert bad.value.code and "duration_seconds" in bad.value.message
        with pytest.raises(NotFound) as missing:
            await client.get_job("job_doesnotexist")
        assert missing.value.code == "not_found" and "job_doesnotexist" in missing.value.message
        # unknown fields are refused by name, before anything is queued
        with pytest.raises(InvalidRequest) as unknown:
            await client.create_job({"prompt": "x", "colour": "red"})
        assert unknown.value.field == "colour"
    async with AsyncClient(h.base_url, "veo_wrong") as client:
        with pytest.raises(Unauthorized) as denied:
            await client.list_keys()
        assert denied.value.status == 401

    def sync_calls() -> None:
        # the service runs on this test's loop: the blocking client runs in a thread
        with Client(h.base_url, token) as client:
            with pytest.raises(NotFound):
                client.get_job("job_doesnotexist")
            job = client.run({"prompt": "from the sync client"})
            assert job.status == "succeeded"
            assert [j.id for j in client.list_jobs()] == [job.id]

    await asyncio.to_thread(sync_calls)


async def test_client_uploads_keys_and_events(service: tuple[Harness, str],
                                              tmp_path: Path) -> None:
    h, token = service
    async with AsyncClient(h.base_url, token) as client:
        up = await client.upload(png((0, 255, 0)), filename="green.png")
        assert (up.width, up.height, up.content_type) == (32, 18, "image/png")
        key = await client.add_key(new_key("extra"), label="second")
        assert key.label == "second" and key.masked.startswith("…")
        assert key.id in [k.id for k in await client.list_keys()]
        await client.delete_key(key.id)
        assert key.id not in [k.id for k in await client.list_keys()]

        job = await client.create_job({"clips": [{"prompt": "green [slow:1]",
                                                  "first_frame": up.id}]})
        statuses = [e.job.status async for e in client.events(job.id) if e.job is not None]
        assert statuses[-1] == "succeeded" and len(statuses) >= 2
        done = await client.get_job(job.id)
        paths = await client.download_job(done, tmp_path)
        assert [p.name for p in paths] == [f"{job.id}-0-0.mp4"]
        ident = mp4.identify(paths[0].read_bytes())
        assert ident is not None and ident["first_frame_sha256"] == hashlib.sha256(
            png((0, 255, 0))).hexdigest()


# ---- batch -----------------------------------------------------------------------------------

def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_results(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


async def test_batch_resumes_after_kill_without_duplicates(
        service: tuple[Harness, str], fake_gemini: FakeGemini, tmp_path: Path) -> None:
    h, token = service
    env = user_env(h, token)
    animals = ["fox", "owl", "bear", "hare", "wolf"]
    write_csv(tmp_path / "prompts.csv", [
        {"id": animal, "prompt": "a {style} {id}" + ("" if i < 2 else " [slow:4]"),
         "style": "paper", "number_of_videos": "2" if animal == "owl" else ""}
        for i, animal in enumerate(animals)])
    args = ["batch", "prompts.csv", "--out", "out", "--name", "{id}", "--poll", "0.2"]

    proc = await asyncio.create_subprocess_exec(
        VEO, *args, env=env, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    out = tmp_path / "out"
    # halfway: the two quick rows are downloaded, the slow three are still generating
    await eventually(lambda: (out / "fox.mp4").exists() and (out / "owl-v1.mp4").exists(), 60)
    assert proc.returncode is None, "the batch finished before it could be killed"
    proc.kill()
    await proc.wait()
    before = await my_jobs(h, token)
    assert len(before) == 5
    assert not (out / "wolf.mp4").exists()
    partial = {r["row"]: r for r in read_results(out / "results.csv")}
    assert partial["1"]["status"] == "succeeded" and partial["1"]["files"] == "out/fox.mp4"

    code, stdout, err = await veo(args, env, cwd=tmp_path, timeout=120)
    assert code == 0, err
    assert "5 rows: 5 succeeded" in stdout
    after = await my_jobs(h, token)
    assert sorted(j["id"] for j in after) == sorted(j["id"] for j in before)
    # one generation per video asked for: nothing was submitted twice
    assert len(fake_gemini.creates()) == 6
    results = read_results(out / "results.csv")
    assert [r["row"] for r in results] == ["1", "2", "3", "4", "5"]
    assert all(r["status"] == "succeeded" and r["job_id"] and not r["error"] for r in results)
    assert results[1]["files"] == "out/owl-v0.mp4;out/owl-v1.mp4"
    for animal in animals:
        for f in (["owl-v0.mp4", "owl-v1.mp4"] if animal == "owl" else [f"{animal}.mp4"]):
            ident = mp4.identify((out / f).read_bytes())
            assert ident is not None and ident["prompt"].startswith(f"a paper {animal}")

    # without the resume state the idempotency keys alone still find every job, and files
    # already downloaded are kept
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    (out / ".veo-batch.json").unlink()
    code, stdout, err = await veo([*args, "--json"], env, cwd=tmp_path)
    assert code == 0, err
    doc = json.loads(stdout)
    assert [r["status"] for r in doc["results"]] == ["succeeded"] * 5
    assert len(await my_jobs(h, token)) == 5 and len(fake_gemini.creates()) == 6
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == stamps


async def test_batch_jsonl_frames_and_bad_rows(service: tuple[Harness, str],
                                               tmp_path: Path) -> None:
    h, token = service
    red = png((255, 0, 0))
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "red.png").write_bytes(red)
    rows = [
        {"prompt": "a {thing} from a red frame", "thing": "rocket",
         "first_frame": "frames/red.png"},
        {"prompt": "bad aspect", "aspect_ratio": "4:3"},
        {"prompt": "too long", "duration_seconds": 99},
        {"prompt": "a {missing} column"},
        {"prompt": "again from the red frame", "first_frame": "frames/red.png"},
    ]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, out, err = await veo(["batch", "rows.jsonl", "--poll", "0.2"], user_env(h, token),
                               cwd=tmp_path)
    assert code == 1, err
    results = {r["row"]: r for r in read_results(tmp_path / "rows-videos" / "results.csv")}
    assert results["1"]["status"] == "succeeded" and results["5"]["status"] == "succeeded"
    assert results["1"]["files"] == "rows-videos/row001.mp4"
    ident = mp4.identify((tmp_path / "rows-videos" / "row001.mp4").read_bytes())
    assert ident is not None and ident["prompt"] == "a rocket from a red frame"
    assert ident["first_frame_sha256"] == hashlib.sha256(red).hexdigest()
    assert results["2"]["status"] == "invalid" and "aspect_ratio" in results["2"]["error"]
    assert results["3"]["status"] == "invalid" and "duration_seconds" in results["3"]["error"]
    assert results["4"]["status"] == "invalid" and "{missing}" in results["4"]["error"]
    assert "2 succeeded" in out and "3 invalid" in out
    # one upload for the image both rows use
    state = json.loads((tmp_path / "rows-videos" / ".veo-batch.json").read_text())
    assert list(state["uploads"]) == [hashlib.sha256(red).hexdigest()]
    assert len(await my_jobs(h, token)) == 2


async def test_batch_bad_file_is_a_usage_error(service: tuple[Harness, str],
                                               tmp_path: Path) -> None:
    h, token = service
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\nnot json\n')
    code, _, err = await veo(["batch", "bad.jsonl"], user_env(h, token), cwd=tmp_path)
    assert code == 2 and "bad.jsonl:2" in err
    code, _, err = await veo(["batch", "nothere.csv"], user_env(h, token), cwd=tmp_path)
    assert code == 2 and "nothere.csv" in err


# ---- a pseudo-terminal -----------------------------------------------------------------------

class PtyProcess:
    """A command whose stdin, stdout and stderr are a pseudo-terminal, as in a shell."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.proc: asyncio.subprocess.Process | None = None
        self.closed = asyncio.Event()

    async def start(self, args: list[str], env: dict[str, str], cwd: Path,
                    columns: int = 100, rows: int = 30) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.master = master
        self.proc = await asyncio.create_subprocess_exec(
            VEO, *args, env={**env, "TERM": "xterm-256color"}, cwd=cwd, stdin=slave,
            stdout=slave, stderr=slave)
        os.close(slave)
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self.master)
            self.closed.set()
            return
        self.buf += chunk

    @property
    def text(self) -> str:
        return self.buf.decode(errors="replace")

    async def expect(self, pattern: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            if time.monotonic() > deadline or self.closed.is_set():
                raise AssertionError(f"{pattern!r} not seen in {self.text[-2000:]!r}")
            await asyncio.sleep(0.05)

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), 5)
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        return code


def assert_progress_bar(text: str) -> None:
    bars = re.findall(r"(job_\w+)\s+([█░]{10,})\s+(\d+)%", text)
    assert bars, text[-2000:]
    assert "\x1b[2K" in text and "\x1b[?25l" in text and "\x1b[?25h" in text  # redrawn in place
    assert int(bars[-1][2]) == 100 and "░" not in bars[-1][1]
    assert any(int(pct) < 100 for _, _, pct in bars)  # seen moving, not only finished


async def test_progress_bar_on_a_terminal(service: tuple[Harness, str], fake_gemini: FakeGemini,
                                          tmp_path: Path) -> None:
    h, token = service
    fake_gemini.delay = 2.0
    term = PtyProcess()
    await term.start(["generate", "a slow sunrise", "--variants", "2", "--out", "v"],
                     user_env(h, token), tmp_path)
    assert await term.wait() == 0, term.text
    assert_progress_bar(term.text)
    assert re.search(r"v/job_\w+-0-1\.mp4", term.text)


async def test_ctrl_c_asks_whether_to_cancel(service: tuple[Harness, str],
                                             tmp_path: Path) -> None:
    h, token = service
    term = PtyProcess()
    await term.start(["generate", "a very slow sunset [slow:60]"], user_env(h, token),
                     tmp_path)
    await term.expect(r"job_\w+\s+[█░]+")
    assert term.proc is not None
    term.proc.send_signal(signal.SIGINT)
    await term.expect(r"cancel job job_\w+\? \[y/N\]")
    term.send("n\n")  # keep going: the bar comes back
    await asyncio.sleep(0.5)
    term.proc.send_signal(signal.SIGINT)
    await term.expect(r"(?s)\[y/N\].*\[y/N\]")
    term.send("y\n")
    assert await term.wait() == 130, term.text
    assert re.search(r"canceled job job_\w+", term.text)
    (job,) = await my_jobs(h, token)
    assert job["status"] == "canceled"


@pytest.mark.browser
@pytest.mark.timeout(400)
async def test_generate_against_the_demo_shows_a_progress_bar(
        own_database: str, redis_url: str, redis: Any, tmp_path: Path) -> None:
    port = free_port()
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "DATABASE_URL": own_database,
           "REDIS_URL": redis_url, "STORAGE_DIR": str(tmp_path / "demo"),
           "FLOW_BROWSER_EXECUTABLE": CHROMIUM}
    demo = await asyncio.create_subprocess_exec(
        VEO, "demo", "--port", str(port), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert demo.stdout is not None
    seen = ""
    try:
        # the demo prints its URL and a token once its own two jobs are done
        while "token:" not in seen:
            line = await asyncio.wait_for(demo.stdout.readline(), 180)
            assert line, seen
            seen += line.decode()
        url = re.search(r"web page: (http://\S+?)/?\s", seen)
        token = re.search(r"token:\s+(\S+)", seen)
        assert url and token, seen
        term = PtyProcess()
        await term.start(["generate", "a paper boat on a rainy street", "--out", "v"],
                         {"PATH": os.environ["PATH"], "LANG": "C.UTF-8",
                          "VEO_URL": url.group(1), "VEO_TOKEN": token.group(1)}, tmp_path)
        assert await term.wait(120) == 0, term.text
        assert_progress_bar(term.text)
        (video,) = (tmp_path / "v").glob("*.mp4")
        ident = mp4.identify(video.read_bytes())
        assert ident is not None and ident["prompt"] == "a paper boat on a rainy street"
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(demo.wait(), 30)
        except TimeoutError:
            demo.kill()
            await demo.wait()


async def test_client_models_select_redo_final_and_posters(service: tuple[Harness, str],
                                                           tmp_path: Path) -> None:
    h, token = service
    async with AsyncClient(h.base_url, token) as client:
        catalog = await client.models()
        assert catalog.default in [m.id for m in catalog.data]

        job = await client.run({"clips": [{"prompt": "first clip"}, {"prompt": "second clip"}],
                                "number_of_videos": 2, "final": {}})
        assert job.final is not None and job.final.status == "succeeded"
        assert {(o.clip, o.variant) for o in job.outputs if o.selected} == {(0, 0), (1, 0)}
        final = await client.download_final(job.id, tmp_path / "final.mp4", final=job.final)
        assert hashlib.sha256(final.read_bytes()).hexdigest() == job.final.sha256
        poster = await client.download_poster(job.id, job.outputs[0].id, tmp_path / "p.jpg")
        assert poster.read_bytes()[:2] == b"\xff\xd8"
        final_poster = await client.download_final_poster(job.id, tmp_path / "fp.jpg")
        assert final_poster.read_bytes()[:2] == b"\xff\xd8"

        picked = await client.select_variant(job.id, 1, 1)
        assert {(o.clip, o.variant) for o in picked.outputs if o.selected} == {(0, 0), (1, 1)}
        rebuilt = await client.build_final(job.id, {"transition": "crossfade"})
        assert rebuilt.status in ("queued", "running")
        rebuilt = await client.wait(job.id)
        assert rebuilt.final is not None and rebuilt.final.status == "succeeded"
        assert rebuilt.final.transition == "crossfade"
        assert rebuilt.final.sha256 != job.final.sha256

        redone = await client.redo_clip(job.id, 0, prompt="first clip, again")
        assert redone.status in ("queued", "running")
        redone = await client.wait(job.id)
        assert redone.status == "succeeded" and redone.clips[0].prompt == "first clip, again"
        paths = await client.download_job(redone, tmp_path / "all")
        assert len(paths) == 5 and paths[-1].name == f"{job.id}-final.mp4"
        ident = mp4.identify(paths[0].read_bytes())
        assert ident is not None and ident["prompt"] == "first clip, again"


async def test_generate_final(service: tuple[Harness, str], tmp_path: Path) -> None:
    h, token = service
    code, out, err = await veo(["generate", "a kite", "--final", "--out", "v"],
                               user_env(h, token), cwd=tmp_path)
    assert code == 0, err
    (job,) = await my_jobs(h, token)
    assert out.split() == [f"v/{job['id']}-0-0.mp4", f"v/{job['id']}-final.mp4"]
    final = (tmp_path / out.split()[1]).read_bytes()
    assert hashlib.sha256(final).hexdigest() == job["final"]["sha256"]


async def test_downloads_follow_presigned_redirects(pg_dsn: str, redis_url: str, redis: Any,
                                                    tmp_path: Path, fake_gemini: FakeGemini,
                                                    s3_server: str, s3_bucket: str) -> None:
    env = make_env(pg_dsn, redis_url, str(tmp_path / "unused"), GEMINI_BASE_URL=fake_gemini.url,
                   S3_ENDPOINT=s3_server, S3_BUCKET=s3_bucket, S3_ACCESS_KEY="test",
                   S3_SECRET_KEY="test", S3_REGION="us-east-1")
    async with running(env) as h:
        _, token = await h.user("s3cli")
        await add_key(h, token, new_key("s3"))
        await h.start_worker()
        code, out, err = await veo(["generate", "into the bucket", "--out", "v"],
                                   user_env(h, token), cwd=tmp_path)
        assert code == 0, err
        (job,) = await my_jobs(h, token)
        resp = await h.http.get(job["outputs"][0]["url"], headers=h.auth(token))
        assert resp.status_code == 302 and resp.headers["location"].startswith(s3_server)
        data = (tmp_path / out.strip()).read_bytes()
        assert hashlib.sha256(data).hexdigest() == job["outputs"][0]["sha256"]
