"""Sniffs uploaded images by content (never by the client's Content-Type) and reads their size.
CPU work: callers run :func:`inspect` in a thread."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import warnings

from PIL import Image

from veo.errors import UnsupportedMediaType


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    content_type: str
    ext: str
    width: int
    height: int
    size: int
    sha256: str


def sniff(data: bytes) -> tuple[str, str] | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


MAX_PIXELS = 64_000_000  # refuses decompression bombs before they reach a backend


def inspect(data: bytes) -> ImageInfo:
    kind = sniff(data)
    if kind is None:
        raise UnsupportedMediaType("file: only PNG, JPEG and WebP images are accepted",
                                   details={"field": "file"})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise UnsupportedMediaType("file: image has too many pixels",
                                               details={"field": "file"})
                img.verify()
    except UnsupportedMediaType:
        raise
    except Exception:
        raise UnsupportedMediaType("file: the image is damaged or not what its header says",
                                   details={"field": "file"}) from None
    return ImageInfo(content_type=kind[0], ext=kind[1], width=width, height=height,
                     size=len(data), sha256=hashlib.sha256(data).hexdigest())
