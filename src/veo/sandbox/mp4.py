"""The fakes' videos: real, playable MP4s (H.264 + AAC) of the requested length and shape, whose
bytes say which request made them.

Two marks, for two kinds of proof:
- a trailing ``uuid`` box holding the request's identity (prompt hash, frame hashes, ...), so a
  test can show that every output landed in its own slot;
- a picture and a tone derived from that identity (a solid colour and a sine frequency), which
  survive re-encoding, so a test can show that a stitched film holds the right clips in order.

ffmpeg comes from the ``imageio-ffmpeg`` wheel. Rendering runs in a subprocess and at most
``RENDER_CONCURRENCY`` at once, so a fake serving hundreds of generations never floods the CPU.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import imageio_ffmpeg

VEO_UUID = bytes.fromhex("7665 6f2d 6661 6b65 2d6f 7574 7075 7421".replace(" ", ""))
FPS = 24
# small frames keep a render near 0.1 s; the aspect ratio is what tests and Flow tiles look at
SIZES = {"16:9": (320, 180), "9:16": (180, 320)}
RENDER_CONCURRENCY = max(1, (os.cpu_count() or 2))
_gate: asyncio.Semaphore | None = None
_plain: dict[tuple[float, str], bytes] = {}


def _semaphore() -> asyncio.Semaphore:
    global _gate
    if _gate is None:
        _gate = asyncio.Semaphore(RENDER_CONCURRENCY)
    return _gate


@cache
def ffmpeg_exe() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _digest(identity: dict[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).digest()


def look(identity: dict[str, Any]) -> tuple[tuple[int, int, int], int]:
    """The colour (RGB) and tone (Hz) a video of this identity shows and plays."""
    d = _digest(identity)
    # channels kept in 40..215 so no two looks are told apart only by clipping or chroma loss
    rgb = (40 + d[0] % 176, 40 + d[1] % 176, 40 + d[2] % 176)
    return rgb, 220 + int.from_bytes(d[3:5], "big") % 660


def _box(identity: dict[str, Any]) -> bytes:
    payload = json.dumps(identity, sort_keys=True).encode()
    return struct.pack(">I4s", 8 + 16 + len(payload), b"uuid") + VEO_UUID + payload


async def _encode(rgb: tuple[int, int, int], tone: int, duration: float,
                  aspect_ratio: str) -> bytes:
    w, h = SIZES.get(aspect_ratio, SIZES["16:9"])
    color = "0x{:02x}{:02x}{:02x}".format(*rgb)
    with tempfile.TemporaryDirectory(prefix="veo-fake-") as tmp:
        out = Path(tmp) / "v.mp4"
        async with _semaphore():
            proc = await asyncio.create_subprocess_exec(
                ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                "-f", "lavfi", "-i", f"color=c={color}:s={w}x{h}:r={FPS}:d={duration}",
                "-f", "lavfi", "-i", f"sine=f={tone}:d={duration}:sample_rate=44100",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                "-g", str(FPS), "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-shortest",
                "-movflags", "+faststart", str(out),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed to render a fake video: {err.decode()[-300:]}")
        return await asyncio.to_thread(out.read_bytes)


async def render(identity: dict[str, Any], *, duration: float = 8.0,
                 aspect_ratio: str = "16:9", distinct: bool = True) -> bytes:
    """An MP4 of ``duration`` seconds for ``identity``. With ``distinct=False`` the picture is
    shared by every video of that length and shape (cached; only the identity box differs),
    which benchmarks use to keep the fake off the CPU."""
    if distinct:
        rgb, tone = look(identity)
        data = await _encode(rgb, tone, duration, aspect_ratio)
    else:
        key = (duration, aspect_ratio)
        if key not in _plain:
            _plain[key] = await _encode((128, 128, 128), 440, duration, aspect_ratio)
        data = _plain[key]
    return data + _box(identity)


@cache
def _base() -> bytes:
    return (Path(__file__).parent / "assets" / "base.mp4").read_bytes()


def make(identity: dict[str, Any]) -> bytes:
    """A 1-second video with the identity box (kept until every fake renders real lengths)."""
    return _base() + _box(identity)


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
