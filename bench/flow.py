"""The Flow backend's browser, headed, as the worker runs it, against the fake Flow site.

1. Per-clip overhead: one browser and one context reused across clips (as ``FlowBackend`` does:
   a page per clip, ``job_done()`` after each, the context recycled every FLOW_RECYCLE_JOBS)
   against a browser launched per clip. Overhead is a clip's wall time outside
   ``FlowDriver.generate``: getting a ready page, closing it, ``job_done``; for a browser per
   clip also launching and closing Chromium. Both sides are averaged per clip, the warm side
   over every clip (its one launch and its recycles included), the other over a smaller
   sample (FLOW_BENCH_COLD, 10). Target: warm >= 5x less.
2. RSS of the worker side: this process and everything it started (Playwright's node driver,
   Chromium, the Xvfb of ``veo.browser.display``, and Chromium's crash handlers, which leave
   the tree for init and are found by the display they run on), sampled after every clip while
   its page is still open. The fake runs in a process of its own and is not counted: it stands
   in for Google. Targets: flat within 10% from clip 20 to clip 300; never above 900 MB.

The browser is headed on an Xvfb the session starts itself (DISPLAY is unset here), as in
production. The fake's generation takes FLOW_BENCH_DELAY (0.05) seconds and its polls are
quick, so the clip time is the driver's own. FLOW_BENCH_CLIPS (300) shortens the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._worker import quiet

from veo.browser.context import BrowserSession, process_tree
from veo.browser.display import VirtualDisplay
from veo.browser.flow import ClipRequest, FlowDriver
from veo.sandbox.flow import FakeFlow

CHROMIUM = os.environ.get("FLOW_BROWSER_EXECUTABLE") or shutil.which("chromium") or \
    "/usr/bin/chromium"
CLIPS = int(os.environ.get("FLOW_BENCH_CLIPS", "300"))
COLD = int(os.environ.get("FLOW_BENCH_COLD", "10"))
RECYCLE_JOBS = int(os.environ.get("FLOW_RECYCLE_JOBS", "50"))
DELAY = float(os.environ.get("FLOW_BENCH_DELAY", "0.05"))
CHECKPOINTS = sorted({c for c in (20, 50, 100, 150, 200, 250, 300, CLIPS) if c <= CLIPS})
RSS_FLAT = 0.10
RSS_MAX = 900 * 2**20
SPEEDUP = 5.0
# quick fake: a generation of DELAY seconds, polls and signed URLs without the real waits, one
# shared picture per video shape so that ffmpeg stays off the CPU
FAKE_KNOBS: dict[str, Any] = {
    "delay": DELAY, "poll_interval": 0.05, "url_delay": [0.0, 0.02], "token_lead": 0.02,
    "boot_delay": 0.02, "upload_delay": 0.0, "distinct_videos": False}


def serve_fake(knobs: dict[str, Any]) -> None:
    """The fake in this process (``--fake``): its address and a signed-in storage state on
    stdout, then serve until stdin closes."""

    async def main() -> None:
        quiet()
        fake = FakeFlow()
        for name, value in knobs.items():
            setattr(fake, name, tuple(value) if isinstance(value, list) else value)
        await fake.start()
        print(json.dumps({"home": fake.home, "state": fake.storage_state()}), flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await fake.stop()

    asyncio.run(main())


@dataclass
class Fake:
    proc: asyncio.subprocess.Process
    home: str
    state: dict[str, Any]

    @classmethod
    async def start(cls) -> Fake:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--fake", json.dumps(FAKE_KNOBS),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        info = json.loads(await proc.stdout.readline())
        return cls(proc, info["home"], info["state"])

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await self.proc.wait()


def detached(display: str) -> set[int]:
    """Processes started on our display that left our tree (Chromium's crash handlers are
    double-forked to init)."""
    marker = f"\0DISPLAY={display}\0".encode()
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in b"\0" + (entry / "environ").read_bytes():
                found.add(int(entry.name))
        except OSError:
            continue
    return found


@dataclass(frozen=True)
class Memory:
    rss: int  # the processes' RSS added up: a page shared by n of them counts n times
    pss: int  # each shared page split among its sharers: what the tree occupies
    processes: int
    kinds: dict[str, tuple[int, int, int]]  # kind -> (processes, PSS, RSS)


def kind(pid: int) -> str:
    """python, node, xvfb, chromium (the browser process), chromium <type> [<service>]."""
    try:
        # Chromium's children rewrite their command line into one space-separated string
        args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
    except OSError:
        return "?"
    exe = args[0].decode(errors="replace").rsplit("/", 1)[-1] if args else "?"
    if "crashpad" in exe:
        return "chromium crash handler"
    if not exe.startswith("chromium"):
        return exe.lower()
    flags = dict(a.decode(errors="replace").split("=", 1) for a in args
                 if a.startswith(b"--") and b"=" in a)
    what = flags.get("--type")
    if what is None:
        return "chromium"
    if what == "utility":
        what = flags.get("--utility-sub-type", "utility").split(".")[0]
    if b"--top-chrome-webui" in args:
        what += " (browser UI)"
    return f"chromium {what}"


def worker_pids(session: BrowserSession, fake: Fake) -> set[int]:
    """Python + Playwright's driver + Chromium + Xvfb, without the fake. The Xvfb is a root
    of its own: it is this process's child today (``setpriv`` execs it), which a change of
    how it is started must not silently drop from the figure."""
    display = session.display
    roots = [os.getpid()] + ([display.pid] if display and display.pid else [])
    pids = process_tree(*roots) - process_tree(fake.proc.pid)
    if display and display.display:
        pids |= detached(display.display)
    return pids


def memory(pids: set[int]) -> Memory:
    kinds: dict[str, tuple[int, int, int]] = {}
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024
                  for line in rollup.splitlines()[1:]}
        n, pss, rss = kinds.get(kind(pid), (0, 0, 0))
        kinds[kind(pid)] = (n + 1, pss + fields["Pss"], rss + fields["Rss"])
    return Memory(sum(k[2] for k in kinds.values()), sum(k[1] for k in kinds.values()),
                  sum(k[0] for k in kinds.values()), kinds)


@dataclass
class Clip:
    whole: float  # the benchmark's own sampling left out
    generate: float
    open: float = 0.0  # getting a ready page
    close: float = 0.0  # closing it
    done: float = 0.0  # job_done
    memory: Memory | None = None  # with the clip's page still open

    @property
    def overhead(self) -> float:
        return self.whole - self.generate


async def no_progress(_pct: int) -> None:
    return None


async def clip(session: BrowserSession, driver: FlowDriver, i: int,
               measure: Fake | None = None) -> Clip:
    """One clip as FlowBackend.run_clip makes it: a page of the shared context, generate,
    the page closed, job_done."""
    t0 = time.perf_counter()
    sampled = 0.0
    mem = None
    with tempfile.TemporaryDirectory() as tmp:
        async with session.page() as page:
            g0 = time.perf_counter()
            videos = await driver.generate(page, ClipRequest(f"bench clip {i}", count=1),
                                           no_progress, Path(tmp))
            g1 = time.perf_counter()
            assert len(videos) == 1 and videos[0].path.stat().st_size > 0
            if measure is not None:
                mem = await asyncio.to_thread(lambda: memory(worker_pids(session, measure)))
            c0 = time.perf_counter()
            sampled = c0 - g1
        c1 = time.perf_counter()
    await session.job_done()
    t1 = time.perf_counter()
    return Clip(t1 - t0 - sampled, g1 - g0, g0 - t0, c1 - c0, t1 - c1, mem)


def mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB"


def ms(s: float) -> str:
    return f"{s * 1000:.0f} ms"


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


async def main() -> None:
    quiet()
    os.environ.pop("DISPLAY", None)  # the session starts its own Xvfb, as in production
    fake = await Fake.start()
    driver = FlowDriver(fake.home, timeout=60)
    started = time.perf_counter()

    warm = BrowserSession(executable=CHROMIUM, headless=False, recycle_jobs=RECYCLE_JOBS)
    await warm.load(fake.state)
    hot: list[Clip] = []
    for i in range(1, CLIPS + 1):
        hot.append(await clip(warm, driver, i, measure=fake))
        if i in CHECKPOINTS:
            m = hot[-1].memory
            assert m is not None
            print(f"  ... clip {i}: PSS {mb(m.pss)}, RSS sum {mb(m.rss)}, {m.processes} "
                  f"processes, {time.perf_counter() - started:.0f} s", flush=True)
    display = warm.display.display if warm.display else None
    launches, contexts = warm.launches, warm.contexts
    await warm.close()

    # a browser per clip: Chromium launched and closed around every clip, on one Xvfb (a
    # worker's X server would outlive its jobs either way)
    shared = VirtualDisplay()
    await shared.start()
    cold: list[Clip] = []
    try:
        for i in range(COLD):
            t0 = time.perf_counter()
            session = BrowserSession(executable=CHROMIUM, headless=False,
                                     recycle_jobs=RECYCLE_JOBS, display=shared)
            await session.load(fake.state)
            one = await clip(session, driver, 10_000 + i)
            await session.close()
            cold.append(Clip(time.perf_counter() - t0, one.generate))
    finally:
        await shared.stop()
    await fake.stop()
    total = time.perf_counter() - started

    w_over = statistics.fmean(c.overhead for c in hot)
    c_over = statistics.fmean(c.overhead for c in cold)
    ratio = c_over / w_over
    print(f"flow bench: {CLIPS} clips headed on its own Xvfb ({display}), one browser, context "
          f"recycled every {RECYCLE_JOBS} jobs (launches {launches}, contexts {contexts}); "
          f"{COLD} clips with a browser each; fake generation {DELAY:.2f} s; {total:.0f} s")
    print(f"flow overhead per clip (wall time outside generate, mean): warm {ms(w_over)} "
          f"(median {ms(statistics.median(c.overhead for c in hot))}, first clip "
          f"{ms(hot[0].overhead)} with the launch) vs browser per clip {ms(c_over)} "
          f"(median {ms(statistics.median(c.overhead for c in cold))}, {COLD} clips) "
          f"= {ratio:.1f}x less (target >= {SPEEDUP:.0f}x) {verdict(ratio >= SPEEDUP)}")
    print(f"flow clip time (median): warm {ms(statistics.median(c.whole for c in hot))} "
          f"(generate {ms(statistics.median(c.generate for c in hot))}) vs browser per clip "
          f"{ms(statistics.median(c.whole for c in cold))} (generate "
          f"{ms(statistics.median(c.generate for c in cold))})")
    print(f"flow warm overhead parts (mean): page open {ms(statistics.fmean(c.open for c in hot))}"
          f", page close {ms(statistics.fmean(c.close for c in hot))}, job_done "
          f"{ms(statistics.fmean(c.done for c in hot))}")
    mems = [c.memory for c in hot]
    assert all(mems)
    for what, label in (("pss", "PSS, each shared page split among its sharers"),
                        ("rss", "RSS added up per process, shared pages counted each time")):
        at = {n: getattr(mems[n - 1], what) for n in CHECKPOINTS}
        print(f"flow memory, {label} (Python + Playwright driver + Chromium + Xvfb, page open): "
              + ", ".join(f"clip {n} {mb(v)}" for n, v in at.items()))
        if 20 in at:
            growth = at[CLIPS] / at[20] - 1
            print(f"flow {what.upper()} clip 20 -> clip {CLIPS}: {mb(at[20])} -> "
                  f"{mb(at[CLIPS])} = {growth:+.1%} (target within +-{RSS_FLAT:.0%}) "
                  f"{verdict(abs(growth) <= RSS_FLAT)}")
        series = [getattr(m, what) for m in mems]
        peak = max(range(len(series)), key=series.__getitem__)
        start = 20 if CLIPS >= 20 else 1
        tail = sorted(series[start - 1:])
        print(f"flow {what.upper()} over clips {start}-{CLIPS}: median "
              f"{mb(statistics.median(tail))}, p95 {mb(tail[int(0.95 * (len(tail) - 1))])}; "
              f"peak {mb(series[peak])} at clip {peak + 1} (target <= {mb(RSS_MAX)}) "
              f"{verdict(series[peak] <= RSS_MAX)}")
    for n in sorted({CHECKPOINTS[0], CHECKPOINTS[-1]}):
        m = mems[n - 1]
        assert m is not None
        print(f"flow memory at clip {n} by process (PSS / RSS): " + ", ".join(
            f"{name}{f' x{k[0]}' if k[0] > 1 else ''} {k[1] // 2**20}/{k[2] // 2**20}"
            for name, k in sorted(m.kinds.items(), key=lambda kv: -kv[1][1])))

if __name__ == "__main__":
    if sys.argv[1:2] == ["--fake"]:
        serve_fake(json.loads(sys.argv[2]))
    else:
        asyncio.run(main())
