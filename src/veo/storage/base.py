"""The object-storage port: what the service needs from S3/R2 or a local directory."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    content_type: str | None = None
    sha256: str | None = None  # known when we wrote the object in this call


class ObjectNotFound(KeyError):
    pass


class Storage(Protocol):
    backend: str

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo: ...

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str
    ) -> ObjectInfo:
        """Store a stream without holding it in memory; returns size and sha256."""
        ...

    async def get_bytes(self, key: str) -> bytes: ...

    def get_stream(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield the object's bytes, optionally the inclusive range ``start..end``."""
        ...

    async def head(self, key: str) -> ObjectInfo | None: ...

    async def delete(self, key: str) -> None: ...

    async def move(self, src: str, dst: str) -> ObjectInfo:
        """Rename an object within the store (a server-side copy on S3); ``dst`` is replaced."""
        ...

    async def source(self, key: str) -> str:
        """Where ffmpeg can read the object itself: a local path or a presigned URL."""
        ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def list(self, prefix: str) -> list[ObjectInfo]: ...

    async def presign(self, key: str, expires_seconds: int = 300) -> str | None:
        """A short-lived GET URL, or None where the backend serves bytes itself."""
        ...

    async def check(self) -> None:
        """Raise if the backend cannot be reached (for /api/health)."""
        ...

    async def close(self) -> None: ...
