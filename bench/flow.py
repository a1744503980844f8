"""Flow backend overhead against the fake Flow site with zero generation time, real Chromium.

1. Per clip, warm (one browser and context reused, a page per clip) against launching a
   browser per job: the whole clip time, and the setup part alone (getting a ready page).
   Target: warm setup >= 5x less than a launch per job.
2. RSS of this process and its children (Python + Playwright driver + Chromium) after 20 and
   after 300 clips on the warm path, context recycled every FLOW_RECYCLE_JOBS (50).
   Target: growth <= 20%.
Set FLOW_BENCH_CLIPS to shorten the second part.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._worker import quiet

from veo.browser.context import BrowserSession, process_tree_rss
from veo.browser.flow import ClipRequest, FlowDriver
from veo.sandbox.flow import FakeFlow

CHROMIUM = os.environ.get("FLOW_BROWSER_EXECUTABLE") or shutil.which("chromium") or \
    "/usr/bin/chromium"
SIDE_BY_SIDE = 10
LONG_RUN = int(os.environ.get("FLOW_BENCH_CLIPS", "300"))


async def no_progress(_pct: int) -> None:
    return None


async def clip(session: BrowserSession, driver: FlowDriver, i: int) -> tuple[float, float]:
    """(setup seconds, whole clip seconds)"""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        async with session.page() as page:
            t1 = time.perf_counter()
            files = await driver.generate(page, ClipRequest(f"bench {i}", "16:9", 1, None),
                                          no_progress, Path(tmp))
            assert len(files) == 1
    await session.job_done()
    return t1 - t0, time.perf_counter() - t0


async def main() -> None:
    quiet()
    fake = FakeFlow()
    fake.delay = 0.0
    fake.notice = False
    fake.history = 0
    await fake.start()
    driver = FlowDriver(fake.home, 60)
    state = fake.storage_state()

    warm = BrowserSession(executable=CHROMIUM, headless=True, recycle_jobs=50)
    await warm.load(state)
    await clip(warm, driver, -1)  # the one launch the warm path pays, outside the figures
    warm_times = [await clip(warm, driver, i) for i in range(SIDE_BY_SIDE)]

    cold_times = []
    for i in range(SIDE_BY_SIDE):
        t0 = time.perf_counter()
        cold = BrowserSession(executable=CHROMIUM, headless=True, recycle_jobs=50)
        await cold.load(state)
        setup, whole = await clip(cold, driver, 100 + i)
        await cold.close()
        cold_times.append((setup, time.perf_counter() - t0))
        del whole

    w_setup = statistics.median(t[0] for t in warm_times)
    c_setup = statistics.median(t[0] for t in cold_times)
    w_clip = statistics.median(t[1] for t in warm_times)
    c_clip = statistics.median(t[1] for t in cold_times)
    print(f"flow overhead: setup per clip warm {w_setup * 1000:.0f} ms vs browser-per-job "
          f"{c_setup * 1000:.0f} ms = {c_setup / w_setup:.0f}x less "
          f"(target >= 5x) {'OK' if c_setup / w_setup >= 5 else 'MISSED'}; whole clip warm "
          f"{w_clip * 1000:.0f} ms vs {c_clip * 1000:.0f} ms ({c_clip / w_clip:.1f}x)")

    done = SIDE_BY_SIDE + 1
    rss_20 = None
    while done < LONG_RUN:
        await clip(warm, driver, done)
        done += 1
        if done == 20:
            rss_20 = process_tree_rss(os.getpid())
    rss_end = process_tree_rss(os.getpid())
    await warm.close()
    await fake.stop()
    if rss_20:
        growth = rss_end / rss_20 - 1
        print(f"flow memory: RSS (Python + driver + Chromium) after 20 clips "
              f"{rss_20 / 2**20:.0f} MB, after {done} clips {rss_end / 2**20:.0f} MB "
              f"= {growth:+.0%} (target <= +20%) {'OK' if growth <= 0.2 else 'MISSED'}; "
              f"browser launches {warm.launches}, contexts {warm.contexts}")


if __name__ == "__main__":
    asyncio.run(main())
