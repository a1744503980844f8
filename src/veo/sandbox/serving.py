"""Serving an ASGI app on loopback inside the running event loop (fakes, demo, tests)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn


class LoopbackServer:
    """``await start()`` returns the base URL once the socket listens; ``await stop()``."""

    app: Any
    url: str = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning",
                                lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.url = f"http://{host}:{self.server.servers[0].sockets[0].getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.should_exit = True
            await self._task
