"""The final video of a 50-clip x 8 s job (400 s of 320x180 video with audio, distinct clips).

1. Build time on the fast path (cut, same parameters: video copied, audio re-encoded) and on the
   re-encode path (0.5 s crossfades: every clip body and every seam encoded as its own piece).
2. Memory during each build: resident memory of this process and its ffmpeg children, sampled
   every 50 ms, minus the same before the build. Target: growth <= 50 MB. Reported twice:
   total resident (which counts the pages of the static ffmpeg binary each child maps, shared
   and reclaimable), and anonymous memory alone (the part that grows with work).
Set FINAL_BENCH_CLIPS to shorten it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from veo import media
from veo.browser.context import process_tree_rss
from veo.sandbox import mp4

CLIPS = int(os.environ.get("FINAL_BENCH_CLIPS", "50"))
SECONDS = 8.0
CROSSFADE = 0.5
TARGET_MB = 50


def tree_anon(pid: int) -> int:
    """Anonymous resident memory (RssAnon) of a process and its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1]) * 1024
        stack.extend(children.get(p, []))
    return total


class Sampler:
    """Peak memory of this process tree, sampled every 50 ms on a thread of its own."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.base_rss = process_tree_rss(self.pid)
        self.base_anon = tree_anon(self.pid)
        self.peak_rss = self.base_rss
        self.peak_anon = self.base_anon
        self.peak_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_rss = max(self.peak_rss, process_tree_rss(self.pid))
            self.peak_anon = max(self.peak_anon, tree_anon(self.pid))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def build(name: str, inputs: list[Path], options: media.FinalOptions,
                out: Path) -> None:
    with Sampler() as mem:
        start = time.perf_counter()
        res = await media.build_final([media.Segment(p) for p in inputs], options, out)
        elapsed = time.perf_counter() - start
    rss = (mem.peak_rss - mem.base_rss) / 2**20
    anon = (mem.peak_anon - mem.base_anon) / 2**20
    expected = len(inputs) * SECONDS
    if options.transition == "crossfade":
        expected -= (len(inputs) - 1) * options.crossfade_seconds
    print(f"final {name}: {len(inputs)} clips x {SECONDS:.0f} s -> {res.duration:.2f} s film "
          f"(expected {expected:.2f}) in {elapsed:.1f} s ({res.duration / elapsed:.0f}x real "
          f"time), fast_path={res.fast_path}, {res.size / 2**20:.1f} MB")
    print(f"final {name} memory: peak growth {rss:.0f} MB resident (Python + ffmpeg), "
          f"{anon:.0f} MB anonymous (target <= {TARGET_MB} MB) "
          f"{'OK' if anon <= TARGET_MB else 'MISSED'}")


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="veo-bench-final-"))
    try:
        start = time.perf_counter()

        async def one(i: int) -> Path:
            path = tmp / f"clip-{i:02d}.mp4"
            data = await mp4.render({"bench": "final", "clip": i}, duration=SECONDS,
                                    aspect_ratio="16:9", distinct=True)
            await asyncio.to_thread(path.write_bytes, data)
            return path

        inputs = list(await asyncio.gather(*(one(i) for i in range(CLIPS))))
        print(f"final: rendered {CLIPS} distinct inputs in {time.perf_counter() - start:.1f} s "
              f"({sum(p.stat().st_size for p in inputs) / 2**20:.1f} MB); "
              f"{media.MEDIA_CONCURRENCY} ffmpeg at once")
        await build("fast path (cut)", inputs, media.FinalOptions(), tmp / "fast.mp4")
        await build(f"re-encode ({CROSSFADE} s crossfade)", inputs,
                    media.FinalOptions(transition="crossfade", crossfade_seconds=CROSSFADE),
                    tmp / "crossfade.mp4")
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


if __name__ == "__main__":
    asyncio.run(main())
