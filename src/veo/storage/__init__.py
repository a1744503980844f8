"""Object storage: S3/R2 when ``S3_BUCKET`` is set, else a local directory."""

from __future__ import annotations

from veo.config import Settings
from veo.storage.base import ObjectInfo, ObjectNotFound, Storage
from veo.storage.local import LocalStorage
from veo.storage.s3 import S3Storage

__all__ = ["LocalStorage", "ObjectInfo", "ObjectNotFound", "S3Storage", "Storage", "from_settings"]


def from_settings(settings: Settings) -> Storage:
    if settings.s3_bucket:
        return S3Storage(
            settings.s3_bucket,
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            region=settings.s3_region,
        )
    return LocalStorage(settings.storage_dir)
