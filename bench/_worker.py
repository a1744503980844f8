"""An in-process arq worker for benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from arq.worker import Worker

from veo import config
from veo.worker import settings as worker_settings


@contextlib.asynccontextmanager
async def worker(settings: config.Settings, *, flow: bool = False) -> AsyncIterator[Worker]:
    cls = worker_settings.build(flow=flow, settings=settings)
    w = Worker(**{k: v for k, v in vars(cls).items() if not k.startswith("__")},
               handle_signals=False)
    task = asyncio.create_task(w.main())
    while not w.ctx.get("backends"):
        await asyncio.sleep(0.01)
    try:
        yield w
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await w.close()


def quiet() -> None:
    import logging

    import structlog

    logging.getLogger().setLevel(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
