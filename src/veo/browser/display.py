"""A virtual X display (Xvfb) for a headed browser on a machine without a screen.

Google refuses headless Chromium on Flow, so the worker runs Chromium headed; where no
``DISPLAY`` is set it starts an Xvfb of its own. Xvfb is a child of the worker and its memory
counts in the worker's RSS, hence one modest screen and no TCP listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import time

from veo import logs

log = logs.get_logger("veo.browser.display")

SCREEN = "1280x900x24"  # width x height x depth; ~4.6 MB of framebuffer
START_TIMEOUT = 10.0  # seconds Xvfb may take to accept connections
STOP_TIMEOUT = 5.0  # seconds Xvfb may take to exit after SIGTERM before it is killed
X11_SOCKETS = "/tmp/.X11-unix"  # noqa: S108 - where every X server puts its socket


def _read_display_number(fd: int, timeout: float) -> int:
    """Xvfb writes its display number to ``-displayfd`` once it accepts connections."""
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("Xvfb did not report a display in time")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 64)
        if not chunk:
            raise RuntimeError("Xvfb exited before it reported a display")
        data += chunk
    return int(data.strip())


class VirtualDisplay:
    """``await start()`` returns ``":N"`` (a free display number chosen by Xvfb itself);
    ``await stop()``. Starting again after Xvfb died starts a new one."""

    def __init__(self, executable: str | None = None, screen: str = SCREEN) -> None:
        self.executable = executable or shutil.which("Xvfb") or "/usr/bin/Xvfb"
        self.screen = screen
        self.display: str | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> str:
        if self.running and self.display:
            return self.display
        read_fd, write_fd = os.pipe()
        # -displayfd: Xvfb picks a free number and reports it when ready, so two workers on one
        # machine never race for ":99"; no TCP listener; no GLX, which Chromium without a GPU
        # never uses and which would pull Mesa in (~50 MB more resident)
        cmd = [self.executable, "-displayfd", str(write_fd), "-screen", "0", self.screen,
               "-nolisten", "tcp", "-extension", "GLX"]
        setpriv = shutil.which("setpriv")
        if setpriv:
            # a worker killed outright (OOM, SIGKILL) takes its Xvfb along
            cmd = [setpriv, "--pdeathsig", "TERM", "--", *cmd]
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        try:
            number = await asyncio.to_thread(_read_display_number, read_fd, START_TIMEOUT)
            await self._wait_socket(number)
        except BaseException:
            await self.stop()
            raise
        finally:
            os.close(read_fd)
        self.display = f":{number}"
        log.info("browser.display_started", display=self.display, pid=self._proc.pid,
                 screen=self.screen)
        return self.display

    async def _wait_socket(self, number: int) -> None:
        path = f"{X11_SOCKETS}/X{number}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                _reader, writer = await asyncio.open_unix_connection(path)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        self.display = None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        log.info("browser.display_stopped", pid=proc.pid)
