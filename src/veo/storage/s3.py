"""S3 / R2 storage on aioboto3.

One client is opened for the life of the process. Streams larger than one part go up as a
multipart upload, so memory stays at one part (8 MiB) whatever the object's size; an upload that
fails midway is aborted so no orphan parts are billed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

from veo.storage.base import ObjectInfo, ObjectNotFound

PART_SIZE = 8 * 1024 * 1024  # S3's minimum part is 5 MiB; 8 MiB keeps part counts low
_READ_CHUNK = 256 * 1024

# long enough for ffmpeg to read a video it was handed, short enough to be useless if leaked
SOURCE_SECONDS = 3600


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class S3Storage:
    backend = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None,
        access_key: str | None,
        secret_key: str | None,
        region: str = "auto",
    ) -> None:
        self.bucket = bucket
        self._session = aioboto3.Session()
        self._kw: dict[str, Any] = dict(
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=None if region == "auto" and not endpoint else region,
            config=Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"},
                          s3={"addressing_style": "path"}),
        )
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def _c(self) -> Any:
        if self._client is None:
            self._client = await self._stack.enter_async_context(
                self._session.client("s3", **self._kw)
            )
        return self._client

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        c = await self._c()
        resp = await c.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        return ObjectInfo(key=key, size=len(data), etag=resp["ETag"].strip('"'),
                          content_type=content_type, sha256=hashlib.sha256(data).hexdigest())

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str
    ) -> ObjectInfo:
        c = await self._c()
        digest = hashlib.sha256()
        buf = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                buf += chunk
                while len(buf) >= PART_SIZE:
                    if upload_id is None:
                        created = await c.create_multipart_upload(
                            Bucket=self.bucket, Key=key, ContentType=content_type)
                        upload_id = created["UploadId"]
                    part, buf = bytes(buf[:PART_SIZE]), buf[PART_SIZE:]
                    resp = await c.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                               PartNumber=len(parts) + 1, Body=part)
                    parts.append({"PartNumber": len(parts) + 1, "ETag": resp["ETag"]})
            if upload_id is None:
                resp = await c.put_object(Bucket=self.bucket, Key=key, Body=bytes(buf),
                                          ContentType=content_type)
                etag = resp["ETag"]
            else:
                if buf or not parts:
                    resp = await c.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                               PartNumber=len(parts) + 1, Body=bytes(buf))
                    parts.append({"PartNumber": len(parts) + 1, "ETag": resp["ETag"]})
                resp = await c.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts})
                etag = resp["ETag"]
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await c.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                   UploadId=upload_id)
            raise
        return ObjectInfo(key=key, size=size, etag=etag.strip('"'), content_type=content_type,
                          sha256=digest.hexdigest())

    async def get_bytes(self, key: str) -> bytes:
        chunks = [c async for c in self.get_stream(key)]
        return b"".join(chunks)

    async def get_stream(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
        c = await self._c()
        kw: dict[str, Any] = {}
        if start is not None or end is not None:
            kw["Range"] = f"bytes={start or 0}-{'' if end is None else end}"
        try:
            resp = await c.get_object(Bucket=self.bucket, Key=key, **kw)
        except ClientError as exc:
            if _missing(exc):
                raise ObjectNotFound(key) from None
            raise
        body = resp["Body"]
        try:
            async for chunk in body.iter_chunks(_READ_CHUNK):
                yield chunk
        finally:
            body.close()

    async def head(self, key: str) -> ObjectInfo | None:
        c = await self._c()
        try:
            resp = await c.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return ObjectInfo(key=key, size=int(resp["ContentLength"]),
                          etag=str(resp["ETag"]).strip('"'),
                          content_type=resp.get("ContentType"))

    async def delete(self, key: str) -> None:
        c = await self._c()
        await c.delete_object(Bucket=self.bucket, Key=key)

    async def move(self, src: str, dst: str) -> ObjectInfo:
        c = await self._c()
        try:
            # a server-side copy: the bytes never pass through this process
            await c.copy_object(Bucket=self.bucket, Key=dst,
                                CopySource={"Bucket": self.bucket, "Key": src})
        except ClientError as exc:
            if _missing(exc):
                raise ObjectNotFound(src) from None
            raise
        await c.delete_object(Bucket=self.bucket, Key=src)
        info = await self.head(dst)
        assert info is not None
        return info

    async def source(self, key: str) -> str:
        url = await self.presign(key, SOURCE_SECONDS)
        assert url is not None
        return url

    async def delete_prefix(self, prefix: str) -> int:
        items = await self.list(prefix)
        c = await self._c()
        for i in range(0, len(items), 1000):
            batch = items[i:i + 1000]
            await c.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": o.key} for o in batch], "Quiet": True})
        return len(items)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        c = await self._c()
        out: list[ObjectInfo] = []
        paginator = c.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out.append(ObjectInfo(key=obj["Key"], size=int(obj["Size"]),
                                      etag=str(obj["ETag"]).strip('"')))
        return out

    async def presign(self, key: str, expires_seconds: int = 300) -> str | None:
        c = await self._c()
        url: str = await c.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_seconds)
        return url

    async def check(self) -> None:
        c = await self._c()
        await c.head_bucket(Bucket=self.bucket)

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None
