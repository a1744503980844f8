"""ffmpeg, and the only module that runs it: probing, frames, posters and the final video.

The binary comes from the ``imageio-ffmpeg`` wheel (a static build: no system ffmpeg, no download
at run time). It has no ffprobe, so :func:`probe` reads the stream summary ``ffmpeg -i`` prints.
Every call is an asyncio subprocess that is killed and reaped on timeout or cancellation, and a
source is a local path or an http(s) URL (a presigned S3 URL) that ffmpeg reads itself, so the
worker never holds a video in memory.

The final video (:func:`build_final`) has two paths:

- fast: ``cut`` transitions, no trims, and every clip with the same codecs and parameters. The
  concat demuxer copies the video stream; the audio is decoded and re-encoded, because AAC
  packets copied across a seam carry each clip's encoder priming (non-monotonic timestamps and a
  click at every cut); encoding 400 s of audio takes about 5 s of one core.
- re-encode: everything else. Each clip body and each crossfade is encoded by its own ffmpeg run
  into a piece (H.264 + PCM, normalised to the first clip's frame size and rate), and the pieces
  are joined by the concat demuxer with the video copied. No run has more than two inputs open,
  so memory is bounded by the frame size, not by the number or length of clips (one ffmpeg with
  50 decoders open grows by several MB per 720p input). Audio is encoded to AAC once, at the join,
  where loudness normalisation (two-pass EBU R128) is applied when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import ssl
import tempfile
import weakref
from collections.abc import AsyncIterator, Coroutine, Sequence
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import imageio_ffmpeg
import msgspec

from veo import logs
from veo.errors import VeoError

T = TypeVar("T")
Source = Path | str  # a local file, or an http(s) URL such as a presigned S3 URL

# ffmpeg runs at once in this process. x264 and the H.264 decoder already spread over the cores:
# on 2 cores a second concurrent run made a 50-clip re-encode only 8% faster and doubled the
# memory it took (+25 MB per run at 320x180, far more at 1080p)
MEDIA_CONCURRENCY = max(1, (os.cpu_count() or 2) // 2)
# Reading a header or one frame is brief and mostly waiting on I/O: many may run at once, so a
# worker storing hundreds of videos does not queue its probes and posters behind one another.
LIGHT_CONCURRENCY = 4 * (os.cpu_count() or 2)

# Timeouts, in seconds. Reading a header or one frame is quick even over a slow link to the
# bucket; encoding scales with the media's length: x264 "veryfast" on two cores needs 0.4 s per
# second of 1080p and 2.7 s per second of 4K, so 20 s per second only catches a wedged process.
PROBE_TIMEOUT = 60.0
FRAME_TIMEOUT = 120.0
ENCODE_TIMEOUT_BASE = 120.0
ENCODE_TIMEOUT_PER_SECOND = 20.0

FILE_CHUNK = 256 * 1024

# what the re-encode path writes: H.264 high profile and AAC play everywhere; CRF 18 is visually
# lossless for generated video, and "veryfast" keeps a 50-clip film within minutes on 2 cores
_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
         "-profile:v", "high"]
_AAC = ["-c:a", "aac", "-b:a", "192k"]
_LOUDNORM = "I=-16:TP=-1.5:LRA=11"  # the usual target for web video (-16 LUFS integrated)
_DEFAULT_SAMPLE_RATE = 48000
_KEEP = 64 * 1024  # bytes of each ffmpeg output stream kept, at its head and at its tail


class MediaError(VeoError):
    """A video could not be read or made; ``code`` says why (``media_corrupt``,
    ``media_no_video``, ``media_unavailable``, ``media_too_short``, ``media_timeout``, ...)."""

    code = "media_failed"


class VideoStream(msgspec.Struct, frozen=True):
    codec: str
    profile: str | None
    width: int
    height: int
    fps: float
    pix_fmt: str | None


class AudioStream(msgspec.Struct, frozen=True):
    codec: str
    sample_rate: int
    channels: int


class Probe(msgspec.Struct, frozen=True):
    duration: float  # seconds, as the container states it (10 ms resolution)
    video: VideoStream
    audio: AudioStream | None


class Segment(msgspec.Struct, frozen=True):
    source: Source
    trim_start_frames: int = 0
    trim_end_frames: int = 0


class FinalOptions(msgspec.Struct, frozen=True):
    transition: Literal["cut", "crossfade"] = "cut"
    crossfade_seconds: float = 0.5
    trim_start_frames: int = 0  # added to every segment's own trims
    trim_end_frames: int = 0
    loudnorm: bool = False


class FinalResult(msgspec.Struct, frozen=True):
    duration: float
    size: int
    sha256: str
    fast_path: bool


# --------------------------------------------------------------------------- running ffmpeg

# ffmpeg yields the cores to the worker's event loop and PostgreSQL: a poster is background
# work, a late key pick or heartbeat is not (on 2 cores a burst of posters made the creates of
# a waiting backlog miss their keys' windows: 84-89% of the quota used, 91-92% niced)
_NICE = ["nice", "-n", "10"] if shutil.which("nice") else []


@cache
def ffmpeg_exe() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


@cache
def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # the static build's OpenSSL looks for CAs under /etc/ssl/cert.pem, which Debian-based
    # images lack, so https sources would fail verification; point it at a real bundle
    if "SSL_CERT_FILE" not in env:
        cafile = ssl.get_default_verify_paths().cafile
        if not cafile or not os.path.exists(cafile):
            with contextlib.suppress(ImportError):
                import certifi

                cafile = certifi.where()
        if cafile:
            env["SSL_CERT_FILE"] = cafile
    return env


_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                  tuple[asyncio.Semaphore, asyncio.Semaphore]] = \
    weakref.WeakKeyDictionary()


def _gate(light: bool = False) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    gates = _gates.get(loop)
    if gates is None:
        gates = _gates[loop] = (asyncio.Semaphore(MEDIA_CONCURRENCY),
                                asyncio.Semaphore(LIGHT_CONCURRENCY))
    return gates[1] if light else gates[0]


async def _capture(stream: asyncio.StreamReader | None) -> str:
    """Drain a pipe, keeping its head (stream summaries) and tail (the error) within bounds."""
    buf = bytearray()
    if stream is None:
        return ""
    while chunk := await stream.read(65536):
        buf += chunk
        if len(buf) > 3 * _KEEP:
            buf[_KEEP:-_KEEP] = b"\n[...]\n"
    return buf.decode("utf-8", "replace")


class _Ran(msgspec.Struct):
    rc: int
    out: str
    err: str


async def _run(args: Sequence[str], *, limit: float, what: str, light: bool = False) -> _Ran:
    """Run ffmpeg to completion within ``limit`` seconds, under the shared gate (the light one
    for a probe or a single frame)."""
    async with _gate(light):
        proc = await asyncio.create_subprocess_exec(
            *_NICE, ffmpeg_exe(), "-hide_banner", "-nostdin", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=_child_env())
        try:
            async with asyncio.timeout(limit):
                out, err = await asyncio.gather(_capture(proc.stdout), _capture(proc.stderr))
                rc = await proc.wait()
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            if isinstance(exc, TimeoutError):
                raise MediaError(f"{what} took longer than {limit:.0f} s and was stopped",
                                 code="media_timeout", retryable=True) from None
            raise
    return _Ran(rc, out, err)


def _is_url(source: Source) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def _describe(source: Source) -> str:
    if _is_url(source):
        return str(source).split("?", 1)[0]  # a presigned query string is a credential
    return str(source)


def _input(source: Source, *pre: str) -> list[str]:
    """Input options for one source. Protocols are whitelisted so a source string can never
    make ffmpeg open something else (``concat:``, ``subfile:``, a device)."""
    if _is_url(source):
        # S3 answers range requests, so reconnecting resumes where a dropped connection stopped
        # (a failed connect is not retried here: the caller's retry has a fresh URL);
        # rw_timeout (microseconds) fails a stalled read instead of waiting for our timeout
        return [*pre, "-protocol_whitelist", "http,https,tcp,tls", "-reconnect", "1",
                "-reconnect_delay_max", "5", "-rw_timeout", "30000000", "-i", str(source)]
    return [*pre, "-protocol_whitelist", "file", "-i", "file:" + str(Path(source).absolute())]


_NO_VIDEO = ("matches no streams", "does not contain any stream",
             "Output file does not contain any stream", "no video stream")
_UNAVAILABLE = ("No such file or directory", "Server returned", "Connection refused",
                "Connection timed out", "Network is unreachable", "certificate verify failed",
                "Name or service not known", "Input/output error", "Connection reset",
                "Permission denied")
_CORRUPT = ("Invalid data found", "moov atom not found", "partial file", "corrupt",
            "Invalid NAL", "error while decoding", "could not find codec parameters",
            "Error splitting the input", "Decoding error")


def _failure(what: str, source: Source | None, err: str) -> MediaError:
    lines = [re.sub(r"\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", ln).strip() for ln in err.splitlines()]
    lines = [ln for ln in lines if ln]
    where = f"the input ({_describe(source)})" if source is not None else "one of the inputs"
    for needles, code, retry, label in (
            (_NO_VIDEO, "media_no_video", False, "has no video stream"),
            (_UNAVAILABLE, "media_unavailable", True, "could not be read"),
            (_CORRUPT, "media_corrupt", False, "is not a readable video")):
        hit = next((ln for ln in lines for n in needles if n in ln), None)
        if hit is not None:
            return MediaError(f"{what}: {where} {label}: {logs.redact_text(hit[-300:])}",
                              code=code, retryable=retry)
    reason = logs.redact_text(lines[-1][-300:] if lines else "no message")
    return MediaError(f"{what} failed on {where}: {reason}")


def _check(ran: _Ran, what: str, source: Source | None) -> None:
    """Raise for a failed run, and for one that "succeeded" over damaged data: ffmpeg logs a
    truncated file ("partial file") as an error but still exits 0 with what it could read."""
    if ran.rc != 0 or any(n in ran.err for n in _CORRUPT):
        raise _failure(what, source, ran.err)


def _encode_timeout(seconds: float) -> float:
    return ENCODE_TIMEOUT_BASE + ENCODE_TIMEOUT_PER_SECOND * seconds


def _last_progress(out: str, key: str) -> str | None:
    found = re.findall(rf"^{key}=(\S+)$", out, re.MULTILINE)
    return found[-1] if found else None


# --------------------------------------------------------------------------- probing

def _split_top(details: str) -> list[str]:
    """Split a stream summary at commas outside parentheses and brackets."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in details:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _codec_and_profile(first: str) -> tuple[str, str | None]:
    codec = first.split()[0] if first.split() else "unknown"
    profile = next((p for p in re.findall(r"\(([^()]*)\)", first) if " / " not in p), None)
    return codec, profile


_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "quad": 4, "4.0": 4, "5.0": 5,
                    "5.1": 6, "6.1": 7, "7.1": 8}


def _video(details: str) -> VideoStream | None:
    parts = _split_top(details)
    codec, profile = _codec_and_profile(parts[0])
    size_at = next((i for i, p in enumerate(parts) if re.match(r"\d+x\d+\b", p)), None)
    if size_at is None:
        return None
    w, h = (int(x) for x in parts[size_at].split()[0].split("x")[:2])
    pix = parts[size_at - 1].split("(")[0].strip() if size_at >= 2 else None
    fps = 0.0
    for unit in ("fps", "tbr"):
        m = re.search(rf"(?:^|,)\s*([\d.]+)(k?) {unit}\b", details)
        if m:
            fps = float(m.group(1)) * (1000 if m.group(2) else 1)
            break
    return VideoStream(codec=codec, profile=profile, width=w, height=h, fps=fps,
                       pix_fmt=pix or None)


def _audio(details: str) -> AudioStream | None:
    parts = _split_top(details)
    codec, _ = _codec_and_profile(parts[0])
    rate = next((int(m.group(1)) for p in parts if (m := re.fullmatch(r"(\d+) Hz", p))), None)
    if rate is None:
        return None
    channels = 2
    for p in parts:
        layout = p.split("(")[0].strip()
        if layout in _LAYOUT_CHANNELS:
            channels = _LAYOUT_CHANNELS[layout]
            break
        if m := re.fullmatch(r"(\d+) channels", p):
            channels = int(m.group(1))
            break
    return AudioStream(codec=codec, sample_rate=rate, channels=channels)


def parse_probe(text: str) -> Probe | None:
    """The first input's duration and first video and audio streams, from ``ffmpeg -i``'s
    summary; None when there is no summary (ffmpeg could not open the input)."""
    if "Input #0" not in text:
        return None
    m = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0
    video: VideoStream | None = None
    audio: AudioStream | None = None
    for kind, details in re.findall(
            r"^\s*Stream #0:\d+\S*: (Video|Audio): (.*)$", text, re.MULTILINE):
        if kind == "Video" and video is None and "attached pic" not in details:
            video = _video(details)
        elif kind == "Audio" and audio is None:
            audio = _audio(details)
    if video is None:
        raise MediaError("no video stream", code="media_no_video")
    return Probe(duration=duration, video=video, audio=audio)


async def probe(source: Source) -> Probe:
    """Duration and streams of a video, from its header (a few KB are read, even over http)."""
    ran = await _run(_input(source), limit=PROBE_TIMEOUT, what="probe", light=True)
    try:
        found = parse_probe(ran.err)
    except MediaError as exc:
        raise MediaError(f"probe: the input ({_describe(source)}) has no video stream",
                         code=exc.code) from None
    if found is None:
        raise _failure("probe", source, ran.err)
    if found.duration <= 0:
        raise MediaError(f"probe: the input ({_describe(source)}) states no duration",
                         code="media_corrupt")
    return found


def same_parameters(probes: Sequence[Probe]) -> bool:
    """True when the videos can be joined by copying their streams: same codec, profile, frame
    size, rate and pixel format, and the same audio (or none) throughout."""
    if not probes:
        return False
    first = probes[0]
    return all(p.video == first.video and p.audio == first.audio for p in probes[1:])


# --------------------------------------------------------------------------- frames

async def _read(path: Path) -> bytes | None:
    def read() -> bytes | None:
        with contextlib.suppress(FileNotFoundError):
            data = path.read_bytes()
            return data or None
        return None
    return await asyncio.to_thread(read)


@contextlib.asynccontextmanager
async def workdir(parent: Path | None = None) -> AsyncIterator[Path]:
    """A temporary directory made and removed off the event loop."""
    path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="veo-media-", dir=parent))
    try:
        yield path
    finally:
        await asyncio.to_thread(shutil.rmtree, path, True)


async def last_frame(source: Source) -> bytes:
    """PNG of the video's very last frame (in presentation order), the first frame of the clip
    that continues it."""
    async with workdir() as tmp:
        out = tmp / "last.png"
        # decode only the end: ffmpeg seeks to the keyframe before (end - window) and writes
        # every frame after it over the same file, so the file ends as the last frame. The
        # window grows when the video track ends well before a longer audio track.
        for window in ("-1", "-10", None):
            pre = ["-sseof", window] if window else []
            ran = await _run(["-v", "error", "-xerror", *_input(source, *pre), "-map", "0:v:0",
                              "-fps_mode", "passthrough", "-update", "1", "-c:v", "png",
                              "-y", str(out)], limit=FRAME_TIMEOUT, what="last frame",
                             light=True)
            _check(ran, "last frame", source)
            data = await _read(out)
            if data:
                return data
    raise MediaError(f"last frame: the input ({_describe(source)}) has no decodable frame",
                     code="media_corrupt")


async def poster(source: Source, *, at: float | None = None, width: int | None = None,
                 probed: Probe | None = None) -> bytes:
    """JPEG of one frame: at ``at`` seconds (clamped to the video), by default 1 s in (or the
    middle of a shorter clip), past any fade-in and the frame carried over from the previous
    clip; ``width`` scales it, keeping the aspect ratio. ``probed``: the source's probe, when
    the caller has it (an ffmpeg run saved)."""
    info = probed or await probe(source)
    last = max(0.0, info.duration - 1 / max(info.video.fps, 1.0))
    t = min(1.0, info.duration / 2) if at is None else min(max(0.0, at), last)
    scale = ["-vf", f"scale={int(width)}:-2"] if width else []
    async with workdir() as tmp:
        out = tmp / "poster.jpg"
        for when in (t, 0.0):
            ran = await _run(["-v", "error", "-xerror", *_input(source, "-ss", f"{when:.3f}"),
                              "-map", "0:v:0", "-frames:v", "1", *scale, "-c:v", "mjpeg",
                              "-q:v", "3", "-update", "1", "-y", str(out)],
                             limit=FRAME_TIMEOUT, what="poster", light=True)
            _check(ran, "poster", source)
            data = await _read(out)
            if data:
                return data
    raise MediaError(f"poster: the input ({_describe(source)}) has no decodable frame",
                     code="media_corrupt")


async def file_chunks(path: Path, chunk: int = FILE_CHUNK) -> AsyncIterator[bytes]:
    """A file's bytes in chunks read off the event loop, for ``Storage.put_stream``."""
    fh = await asyncio.to_thread(path.open, "rb")
    try:
        while data := await asyncio.to_thread(fh.read, chunk):
            yield data
    finally:
        await asyncio.to_thread(fh.close)


async def _digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    async for data in file_chunks(path, 1024 * 1024):
        h.update(data)
        size += len(data)
    return size, h.hexdigest()


# --------------------------------------------------------------------------- the final video

def _rate(fps: float) -> Fraction:
    """The exact frame rate behind a printed one (23.98 is 24000/1001)."""
    for base in (24, 30, 60, 120):
        if abs(fps - base * 1000 / 1001) < 0.01:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(24)


def _concat_list(entries: Sequence[tuple[Source, Fraction | None]]) -> str:
    lines = []
    for source, duration in entries:
        path = str(source) if _is_url(source) else str(Path(source).absolute())
        lines.append("file '" + path.replace("'", "'\\''") + "'")
        # with ``inpoint 0`` (and -copyts at the join) each clip keeps its own timestamps; by
        # default the demuxer shifts every clip by its AAC priming (21-23 ms), delaying the
        # picture and overlapping audio packets at each seam
        lines.append("inpoint 0")
        if duration is not None:
            lines.append(f"duration {float(duration):.6f}")
    return "\n".join(lines) + "\n"


async def _write_text(path: Path, text: str) -> None:
    await asyncio.to_thread(path.write_text, text)


def _concat_input(listing: Path) -> list[str]:
    return ["-f", "concat", "-safe", "0", "-protocol_whitelist", "file,http,https,tcp,tls",
            "-i", str(listing)]


async def _loudnorm_filter(listing: Path, seconds: float, rate: int) -> str | None:
    """The second pass of EBU R128 normalisation, measured over the whole joined audio (linear
    gain, so nothing pumps); None when there is nothing to normalise (silence)."""
    ran = await _run(["-v", "info", "-nostats", "-xerror", *_concat_input(listing),
                      "-map", "0:a:0", "-af", f"loudnorm={_LOUDNORM}:print_format=json",
                      "-f", "null", "-"], limit=_encode_timeout(seconds) / 4,
                     what="loudness analysis")
    if ran.rc != 0:  # not _check: at this log level the stream summary holds free text
        raise _failure("loudness analysis", None, ran.err)
    m = re.search(r"\{[^{}]*\"input_i\"[^{}]*\}", ran.err)
    if m is None:
        raise MediaError("loudness analysis printed no measurement")
    found: dict[str, Any] = json.loads(m.group(0))
    values = {k: float(found[k]) for k in ("input_i", "input_tp", "input_lra", "input_thresh",
                                           "target_offset")}
    if not all(abs(v) < 1e6 for v in values.values()):  # -inf: digital silence
        return None
    return (f"loudnorm={_LOUDNORM}:measured_I={values['input_i']}"
            f":measured_TP={values['input_tp']}:measured_LRA={values['input_lra']}"
            f":measured_thresh={values['input_thresh']}:offset={values['target_offset']}"
            f":linear=true,aresample={rate}")


async def _join(listing: Path, out: Path, *, audio: bool, audio_rate: int, loudnorm: bool,
                seconds: float) -> None:
    """Concatenate a list with the video copied and the audio encoded once."""
    audio_args: list[str] = []
    if audio:
        audio_args = ["-map", "0:a:0", *_AAC]
        if loudnorm:
            second_pass = await _loudnorm_filter(listing, seconds, audio_rate)
            if second_pass:
                audio_args += ["-af", second_pass]
    ran = await _run(["-v", "error", "-xerror", "-copyts", *_concat_input(listing),
                      "-map", "0:v:0", "-c:v", "copy", *audio_args, "-movflags", "+faststart",
                      "-f", "mp4", "-y", str(out)],
                     limit=_encode_timeout(seconds) / 4, what="join")
    _check(ran, "join", None)


async def _frames(source: Source, rate: Fraction | None, seconds: float) -> int:
    """Frames in a video's first video stream: its packets (read, not decoded) or, when the
    video will be resampled to ``rate``, the frames that come out of the fps filter."""
    if rate is None:
        tail = ["-map", "0:v:0", "-c", "copy"]
    else:
        tail = ["-map", "0:v:0", "-vf", f"fps={rate}"]
    ran = await _run(["-v", "error", "-xerror", *_input(source), *tail, "-f", "null",
                      "-progress", "pipe:1", "-nostats", "-"],
                     limit=_encode_timeout(seconds), what="frame count")
    _check(ran, "frame count", source)
    count = _last_progress(ran.out, "frame")
    if count is None:
        raise _failure("frame count", source, ran.err)
    return int(count)


async def _localise(source: Source, dest: Path, seconds: float) -> Path:
    """A local copy (the streams, remuxed) of a remote source, which the re-encode reads several
    times: one download, and a presigned URL that expires mid-build does no harm."""
    if not _is_url(source):
        return Path(source)
    ran = await _run(["-v", "error", "-xerror", *_input(source), "-map", "0:v:0", "-map",
                      "0:a:0?", "-c", "copy", "-f", "mp4", "-y", str(dest)],
                     limit=_encode_timeout(seconds), what="download")
    _check(ran, "download", source)
    return dest


class _Target(msgspec.Struct, frozen=True):
    width: int
    height: int
    rate: Fraction
    sample_rate: int
    audio: bool  # whether the final has an audio track

    def samples(self, frame: int) -> int:
        return round(frame * self.sample_rate / self.rate)


class _Clip(msgspec.Struct, frozen=True):
    path: Path
    has_audio: bool
    start: int  # first frame kept
    end: int  # one past the last frame kept


def _video_chain(inp: int, t: _Target, start: int, end: int, label: str) -> str:
    # trim first (at the target rate) so only kept frames are scaled; a different frame size is
    # fitted inside the target and padded with black, never cropped or stretched
    return (f"[{inp}:v:0]fps={t.rate},trim=start_frame={start}:end_frame={end},"
            f"setpts=PTS-STARTPTS,scale={t.width}:{t.height}:force_original_aspect_ratio=decrease"
            f":force_divisible_by=2,pad={t.width}:{t.height}:(ow-iw)/2:(oh-ih)/2:color=black,"
            f"setsar=1,format=yuv420p[{label}]")


def _audio_chain(inp: int, has_audio: bool, t: _Target, start: int, end: int,
                 label: str) -> str:
    a, b = t.samples(start), t.samples(end)
    if not has_audio:
        return (f"anullsrc=r={t.sample_rate}:cl=stereo,aformat=sample_fmts=s16,"
                f"atrim=end_sample={b - a}[{label}]")
    # padded, so a clip whose audio ends before its picture still fills its piece
    return (f"[{inp}:a:0]aresample={t.sample_rate},aformat=sample_fmts=s16:channel_layouts="
            f"stereo,apad,atrim=start_sample={a}:end_sample={b},asetpts=PTS-STARTPTS[{label}]")


async def _piece(out: Path, t: _Target, parts: Sequence[tuple[_Clip, int, int]],
                 fade: int) -> None:
    """Encode one piece: a clip's frames [start, end), or (two parts) a crossfade of ``fade``
    frames between the end of one clip and the start of the next."""
    graph: list[str] = []
    inputs: list[str] = []
    for i, (clip, start, end) in enumerate(parts):
        inputs += _input(clip.path)
        graph.append(_video_chain(i, t, start, end, f"v{i}"))
        if t.audio:
            graph.append(_audio_chain(i, clip.has_audio, t, start, end, f"a{i}"))
    if len(parts) == 2:
        seconds = float(fade / t.rate)
        graph.append(f"[v0][v1]xfade=transition=fade:duration={seconds:.6f}:offset=0,"
                     f"format=yuv420p[v]")
        if t.audio:
            overlap = min(t.samples(parts[0][2]) - t.samples(parts[0][2] - fade),
                          t.samples(parts[1][1] + fade) - t.samples(parts[1][1]))
            graph.append(f"[a0][a1]acrossfade=ns={overlap}:c1=tri:c2=tri[a]")
        vout, aout = "[v]", "[a]"
    else:
        vout, aout = "[v0]", "[a0]"
    frames = max(end - start for _, start, end in parts)
    audio = ["-map", aout, "-c:a", "pcm_s16le"] if t.audio else []
    # keyframes every 2 s keep a long film seekable; every piece shares these settings, so
    # their H.264 headers are identical and the pieces join by copying
    ran = await _run(["-v", "error", "-xerror", *inputs, "-filter_complex", ";".join(graph),
                      "-map", vout, *_X264, "-g", str(round(2 * t.rate)), *audio, "-f", "mov",
                      "-y", str(out)],
                     limit=_encode_timeout(float(frames / t.rate) * len(parts)),
                     what="encode")
    _check(ran, "encode", parts[0][0].path)


def _check_options(options: FinalOptions, segments: Sequence[Segment]) -> None:
    if not segments:
        raise MediaError("a final video needs at least one clip", code="media_bad_options")
    if options.transition not in ("cut", "crossfade"):
        raise MediaError(f"unknown transition {options.transition!r}", code="media_bad_options")
    if options.transition == "crossfade" and not options.crossfade_seconds > 0:
        raise MediaError("crossfade_seconds must be more than 0", code="media_bad_options")
    trims = [options.trim_start_frames, options.trim_end_frames]
    trims += [n for s in segments for n in (s.trim_start_frames, s.trim_end_frames)]
    if any(n < 0 for n in trims):
        raise MediaError("trims are counts of frames and cannot be negative",
                         code="media_bad_options")


async def _all(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run coroutines as tasks (each ffmpeg run waits for the shared gate); the first failure
    cancels the rest, so no process outlives the build, and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None
    return [t.result() for t in tasks]


async def build_final(segments: Sequence[Segment], options: FinalOptions,
                      out: Path) -> FinalResult:
    """Join the segments, in order, into one MP4 at ``out`` (written next to it and renamed, so a
    failed build leaves nothing at ``out``). Inputs with no audio contribute silence when
    another input has audio; when none has audio, the film has none."""
    _check_options(options, segments)
    probes = await _all([probe(s.source) for s in segments])
    trimmed = any(s.trim_start_frames or s.trim_end_frames for s in segments) or \
        options.trim_start_frames or options.trim_end_frames
    fast = options.transition == "cut" and not trimmed and same_parameters(probes)
    seconds = sum(p.duration for p in probes)
    await asyncio.to_thread(out.parent.mkdir, parents=True, exist_ok=True)
    async with workdir(out.parent) as tmp:
        built = tmp / "final.mp4"
        if fast:
            listing = tmp / "list.txt"
            await _write_text(listing, _concat_list([(s.source, None) for s in segments]))
            first_audio = probes[0].audio
            await _join(listing, built, audio=first_audio is not None,
                        audio_rate=first_audio.sample_rate if first_audio else 0,
                        loudnorm=options.loudnorm, seconds=seconds)
        else:
            await _reencode(segments, probes, options, tmp, built, seconds)
        result_probe = await probe(built)
        size, sha = await _digest(built)
        await asyncio.to_thread(os.replace, built, out)
    return FinalResult(duration=result_probe.duration, size=size, sha256=sha, fast_path=fast)


async def _reencode(segments: Sequence[Segment], probes: Sequence[Probe], options: FinalOptions,
                    tmp: Path, built: Path, seconds: float) -> None:
    first = probes[0].video
    with_audio = [p.audio for p in probes if p.audio is not None]
    target = _Target(width=first.width - first.width % 2, height=first.height - first.height % 2,
                     rate=_rate(first.fps),
                     sample_rate=with_audio[0].sample_rate if with_audio else
                     _DEFAULT_SAMPLE_RATE, audio=bool(with_audio))

    async def prepare(i: int) -> _Clip:
        p = probes[i]
        path = await _localise(segments[i].source, tmp / f"in-{i}.mp4", p.duration)
        resampled = None if _rate(p.video.fps) == target.rate else target.rate
        total = await _frames(path, resampled, p.duration)
        start = segments[i].trim_start_frames + options.trim_start_frames
        end = total - segments[i].trim_end_frames - options.trim_end_frames
        return _Clip(path=path, has_audio=p.audio is not None, start=start, end=end)

    clips: list[_Clip] = await _all([prepare(i) for i in range(len(segments))])
    fade = 0
    if options.transition == "crossfade" and len(clips) > 1:
        fade = max(1, round(options.crossfade_seconds * target.rate))
    for i, c in enumerate(clips):
        need = fade * ((i > 0) + (i < len(clips) - 1)) or 1
        if c.end - c.start < need:
            raise MediaError(
                f"clip {i} is too short: {max(0, c.end - c.start)} frame(s) left after "
                f"trimming, and its transitions need at least {need}", code="media_too_short",
                details={"segment": i})

    # pieces in film order: body 0, fade 0-1, body 1, fade 1-2, ..., body n-1
    jobs: list[tuple[Path, list[tuple[_Clip, int, int]], int]] = []
    for i, c in enumerate(clips):
        head = fade if i > 0 else 0
        tail = fade if i < len(clips) - 1 else 0
        if c.end - tail > c.start + head:
            jobs.append((tmp / f"p{len(jobs):03d}.mov", [(c, c.start + head, c.end - tail)], 0))
        if tail:
            nxt = clips[i + 1]
            jobs.append((tmp / f"p{len(jobs):03d}.mov",
                         [(c, c.end - fade, c.end), (nxt, nxt.start, nxt.start + fade)], fade))
    await _all([_piece(path, target, parts, f) for path, parts, f in jobs])
    entries: list[tuple[Source, Fraction | None]] = []
    for path, parts, f in jobs:
        frames = f if f else parts[0][2] - parts[0][1]
        entries.append((path, frames / target.rate))
    listing = tmp / "pieces.txt"
    await _write_text(listing, _concat_list(entries))
    await _join(listing, built, audio=target.audio, audio_rate=target.sample_rate,
                loudnorm=options.loudnorm, seconds=seconds)
