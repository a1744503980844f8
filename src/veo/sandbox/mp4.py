"""Fake outputs: a real, playable MP4 (H.264 + AAC, 1 s) with a trailing ``uuid`` box that
records what request made it, so a test can prove each output landed in the right slot."""

from __future__ import annotations

import json
import struct
from functools import cache
from pathlib import Path
from typing import Any

VEO_UUID = bytes.fromhex("7665 6f2d 6661 6b65 2d6f 7574 7075 7421".replace(" ", ""))


@cache
def _base() -> bytes:
    return (Path(__file__).parent / "assets" / "base.mp4").read_bytes()


def make(identity: dict[str, Any]) -> bytes:
    payload = json.dumps(identity, sort_keys=True).encode()
    box = struct.pack(">I4s", 8 + 16 + len(payload), b"uuid") + VEO_UUID + payload
    return _base() + box


def boxes(data: bytes) -> list[tuple[str, int, int]]:
    """Top-level ISO BMFF boxes as (type, offset, size); raises ValueError if malformed."""
    out = []
    pos = 0
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated box header")
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        if size < 8 or pos + size > len(data):
            raise ValueError("bad box size")
        out.append((kind.decode("latin-1"), pos, size))
        pos += size
    return out


def identify(data: bytes) -> dict[str, Any] | None:
    for kind, offset, size in boxes(data):
        if kind == "uuid" and data[offset + 8:offset + 24] == VEO_UUID:
            result: dict[str, Any] = json.loads(data[offset + 24:offset + size])
            return result
    return None
