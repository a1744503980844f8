"""Schemathesis hooks for tests/e2e/test_openapi.py (loaded by the `st` process through
SCHEMATHESIS_HOOKS).

The upload's `file` part is declared `format: binary` with `encoding.contentType` image/png,
image/jpeg, image/webp. A JSON Schema cannot say "the bytes of a PNG", and the server tells an
image by its bytes, so schemathesis is given real images of each declared type to send
(its documented `schemathesis.openapi.media_type` registration): a positive case is then truly
valid, and links from the created upload reach the routes that use its id.
"""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image


def _image(fmt: str, size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def _images(fmt: str) -> st.SearchStrategy[bytes]:
    return st.builds(_image, st.just(fmt),
                     st.tuples(st.integers(1, 64), st.integers(1, 64)),
                     st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)))


for _media, _fmt in (("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/webp", "WEBP")):
    schemathesis.openapi.media_type(_media, _images(_fmt))
