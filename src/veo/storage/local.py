"""Local-directory storage, the embedded default when ``S3_BUCKET`` is unset.

Every key is resolved under the root and refused if it would escape it. Writes go to a temporary
file then ``os.replace``, so a reader never sees half an object. File work runs in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from veo.storage.base import ObjectInfo, ObjectNotFound

_CHUNK = 256 * 1024


class LocalStorage:
    backend = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        if not key or key.startswith("/") or "\\" in key or "\x00" in key:
            raise ValueError(f"invalid object key {key!r}")
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid object key {key!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"invalid object key {key!r}")
        return path

    @staticmethod
    def _etag(st: os.stat_result) -> str:
        return f"{st.st_mtime_ns:x}-{st.st_size:x}"

    def _info(self, key: str, path: Path, sha256: str | None = None) -> ObjectInfo:
        st = path.stat()
        ctype = mimetypes.guess_type(path.name)[0]
        return ObjectInfo(key=key, size=st.st_size, etag=self._etag(st), content_type=ctype,
                          sha256=sha256)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(key, one(), content_type)

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str
    ) -> ObjectInfo:
        path = self.path(key)

        def open_tmp() -> tuple[int, str]:
            path.parent.mkdir(parents=True, exist_ok=True)
            return tempfile.mkstemp(dir=path.parent, prefix=".tmp-")

        fd, tmp = await asyncio.to_thread(open_tmp)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    digest.update(chunk)
                    await asyncio.to_thread(fh.write, chunk)
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            await asyncio.to_thread(Path(tmp).unlink, True)
            raise
        return await asyncio.to_thread(self._info, key, path, digest.hexdigest())

    async def get_bytes(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    async def get_stream(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self.path(key)
        try:
            fh = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        try:
            if start:
                await asyncio.to_thread(fh.seek, start)
            remaining = None if end is None else end - (start or 0) + 1
            while remaining is None or remaining > 0:
                size = _CHUNK if remaining is None else min(_CHUNK, remaining)
                chunk = await asyncio.to_thread(fh.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    async def head(self, key: str) -> ObjectInfo | None:
        path = self.path(key)
        try:
            return await asyncio.to_thread(self._info, key, path)
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        path = self.path(key)
        await asyncio.to_thread(path.unlink, True)

    async def move(self, src: str, dst: str) -> ObjectInfo:
        source, target = self.path(src), self.path(dst)

        def rename() -> ObjectInfo:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)  # atomic: a reader sees the old or the new object
            except FileNotFoundError:
                raise ObjectNotFound(src) from None
            return self._info(dst, target)

        return await asyncio.to_thread(rename)

    async def source(self, key: str) -> str:
        return str(self.path(key))

    async def delete_prefix(self, prefix: str) -> int:
        items = await self.list(prefix)
        for item in items:
            await self.delete(item.key)
        return len(items)

    def _walk_root(self, prefix: str) -> Path:
        """The deepest directory that holds every key starting with ``prefix``: a listing
        walks that subtree, not the whole store."""
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        return self.path(head) if head else self.root

    async def list(self, prefix: str) -> list[ObjectInfo]:
        def walk() -> list[ObjectInfo]:
            out = []
            for dirpath, _dirs, files in os.walk(self._walk_root(prefix)):
                for name in files:
                    if name.startswith(".tmp-"):
                        continue
                    full = Path(dirpath) / name
                    key = full.relative_to(self.root).as_posix()
                    if key.startswith(prefix):
                        out.append(self._info(key, full))
            return sorted(out, key=lambda o: o.key)

        return await asyncio.to_thread(walk)

    async def presign(self, key: str, expires_seconds: int = 300) -> str | None:
        return None

    async def check(self) -> None:
        def probe() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise PermissionError(f"{self.root} is not writable")

        await asyncio.to_thread(probe)

    async def close(self) -> None:
        return None
