"""veo.media against the real ffmpeg, with real videos from the sandbox's renderer (each a solid
colour and a tone derived from its identity), so a film can be checked clip by clip."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import http.server
import io
import ipaddress
import os
import re
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from veo import media
from veo.sandbox import mp4
from veo.storage.s3 import S3Storage

RGB = tuple[int, int, int]
TOL = 8  # per channel: H.264 and the YUV round trip move a flat colour by a few units


def ident(name: str) -> dict[str, str]:
    return {"test": "media", "clip": name}


def colour(name: str) -> RGB:
    return mp4.look(ident(name))[0]


def near(a: RGB, b: RGB, tol: int = TOL) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


async def ff(*args: str) -> tuple[int, bytes, str]:
    proc = await asyncio.create_subprocess_exec(
        mp4.ffmpeg_exe(), "-hide_banner", "-nostdin", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out, err.decode(errors="replace")


async def frame_at(path: Path, t: float) -> Image.Image:
    rc, out, err = await ff("-ss", f"{t:.3f}", "-i", str(path), "-frames:v", "1",
                            "-f", "image2pipe", "-c:v", "png", "-")
    assert rc == 0 and out, err
    return Image.open(io.BytesIO(out)).convert("RGB")


async def colour_at(path: Path, t: float) -> RGB:
    img = await frame_at(path, t)
    px: RGB = img.getpixel((img.width // 2, img.height // 2))  # type: ignore[assignment]
    return px


def png_colour(data: bytes) -> RGB:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    px: RGB = img.getpixel((img.width // 2, img.height // 2))  # type: ignore[assignment]
    return px


async def frame_count(path: Path) -> int:
    rc, out, err = await ff("-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null",
                            "-progress", "pipe:1", "-nostats", "-")
    assert rc == 0, err
    return int(re.findall(rb"^frame=(\d+)", out, re.MULTILINE)[-1])


async def loudness(path: Path, start: float = 0, length: float | None = None) -> float:
    cut = ["-t", str(length)] if length else []
    rc, _, err = await ff("-ss", str(start), *cut, "-i", str(path), "-map", "0:a:0",
                          "-af", "ebur128", "-f", "null", "-")
    assert rc == 0, err
    return float(re.findall(r"I:\s+(-?[\d.]+|-inf) LUFS", err)[-1])


async def max_volume(path: Path, start: float, length: float) -> float:
    rc, _, err = await ff("-ss", str(start), "-t", str(length), "-i", str(path),
                          "-map", "0:a:0", "-af", "volumedetect", "-f", "null", "-")
    assert rc == 0, err
    return float(re.findall(r"max_volume: (-?[\d.]+|-inf) dB", err)[-1])


def ffmpeg_children(doing: str = "") -> list[int]:
    """Our child processes that are ffmpeg (zombies included: a zombie was never reaped) and
    have ``doing`` in their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and comm.startswith("ffmpeg"):
            with contextlib.suppress(OSError):
                if doing.encode() not in (entry / "cmdline").read_bytes():
                    continue
            found.append(int(entry.name))
    return found


async def write_clip(path: Path, colours: list[tuple[str, int]], *, audio_seconds: float,
                     bframes: bool = True) -> Path:
    """A 320x180 24 fps clip of runs of colours (hex, frames) with a tone of its own length."""
    inputs: list[str] = []
    graph = []
    for i, (hexcolour, frames) in enumerate(colours):
        inputs += ["-f", "lavfi", "-i", f"color=c=0x{hexcolour}:s=320x180:r=24:d={frames}"]
        graph.append(f"[{i}:v]trim=end_frame={frames}[c{i}]")
    n = len(colours)
    graph.append("".join(f"[c{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0,format=yuv420p[v]")
    rc, _, err = await ff(
        *inputs, "-f", "lavfi", "-i", f"sine=f=330:d={audio_seconds}",
        "-filter_complex", ";".join(graph), "-map", "[v]", "-map", f"{n}:a",
        "-c:v", "libx264", "-preset", "medium" if bframes else "ultrafast", "-c:a", "aac",
        "-y", str(path))
    assert rc == 0, err
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
async def clips(workdir: Path) -> dict[str, Path]:
    """Three 2 s 16:9 clips a, b, c; a 9:16 one; c at 30 fps; a silent copy of c; a corrupt and
    a truncated file; and an audio-only file."""
    out: dict[str, Path] = {}
    for name, ratio in (("a", "16:9"), ("b", "16:9"), ("c", "16:9"), ("tall", "9:16")):
        data = await mp4.render(ident(name), duration=2.0, aspect_ratio=ratio)
        out[name] = workdir / f"{name}.mp4"
        out[name].write_bytes(data)
    out["silent"] = workdir / "silent.mp4"
    rc, _, err = await ff("-i", str(out["c"]), "-map", "0:v", "-c", "copy", "-y",
                          str(out["silent"]))
    assert rc == 0, err
    out["c30"] = workdir / "c30.mp4"  # c again, at 30 fps
    rc, _, err = await ff("-i", str(out["c"]), "-r", "30", "-c:v", "libx264", "-preset",
                          "ultrafast", "-c:a", "copy", "-y", str(out["c30"]))
    assert rc == 0, err
    out["junk"] = workdir / "junk.mp4"
    out["junk"].write_bytes(os.urandom(4096))
    data = out["a"].read_bytes()
    out["truncated"] = workdir / "truncated.mp4"
    out["truncated"].write_bytes(data[: len(data) * 2 // 3])
    out["sound"] = workdir / "sound.m4a"
    rc, _, err = await ff("-f", "lavfi", "-i", "sine=d=1", "-y", str(out["sound"]))
    assert rc == 0, err
    return out


def segs(*paths: Path) -> list[media.Segment]:
    return [media.Segment(p) for p in paths]


# --------------------------------------------------------------------------- probing


async def test_probe_reads_streams(clips: dict[str, Path]) -> None:
    p = await media.probe(clips["a"])
    assert abs(p.duration - 2.0) < 0.03
    assert (p.video.codec, p.video.width, p.video.height, p.video.fps, p.video.pix_fmt) == \
        ("h264", 320, 180, 24.0, "yuv420p")
    assert p.audio == media.AudioStream(codec="aac", sample_rate=44100, channels=2)
    tall = await media.probe(clips["tall"])
    assert (tall.video.width, tall.video.height) == (180, 320)
    assert (await media.probe(clips["silent"])).audio is None
    assert media.same_parameters([p, await media.probe(clips["b"])])
    assert not media.same_parameters([p, tall])
    assert not media.same_parameters([p, await media.probe(clips["silent"])])


def test_parse_probe_other_shapes() -> None:
    text = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Duration: 01:02:03.45, start: 0.000000, bitrate: 9000 kb/s
  Stream #0:0[0x1](und): Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 64x64 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn (attached pic)
  Stream #0:1[0x2](und): Video: hevc (Main 10) (hvc1 / 0x31637668), yuv420p10le(tv, bt2020nc/bt2020/smpte2084), 3840x2160 [SAR 1:1 DAR 16:9], 9000 kb/s, 23.98 fps, 23.98 tbr, 24k tbn (default)
  Stream #0:2[0x3](und): Audio: eac3 (ec-3 / 0x332D6365), 48000 Hz, 5.1(side), fltp, 640 kb/s
"""  # noqa: E501
    p = media.parse_probe(text)
    assert p is not None
    assert p.duration == pytest.approx(3723.45)
    assert p.video == media.VideoStream(codec="hevc", profile="Main 10", width=3840, height=2160,
                                        fps=23.98, pix_fmt="yuv420p10le")
    assert p.audio == media.AudioStream(codec="eac3", sample_rate=48000, channels=6)
    assert media.parse_probe("garbage") is None


async def test_bad_inputs_give_clear_errors(clips: dict[str, Path], workdir: Path) -> None:
    with pytest.raises(media.MediaError) as junk:
        await media.probe(clips["junk"])
    assert junk.value.code == "media_corrupt" and not junk.value.retryable
    assert "junk.mp4" in junk.value.message and "not a readable video" in junk.value.message

    with pytest.raises(media.MediaError) as missing:
        await media.probe(workdir / "nowhere.mp4")
    assert missing.value.code == "media_unavailable" and missing.value.retryable

    with pytest.raises(media.MediaError) as sound:
        await media.probe(clips["sound"])
    assert sound.value.code == "media_no_video"
    with pytest.raises(media.MediaError) as sound_frame:
        await media.last_frame(clips["sound"])
    assert sound_frame.value.code == "media_no_video"

    # a truncated file has an intact header; whatever reads its media finds the damage
    for call in (media.last_frame(clips["truncated"]),
                 media.build_final(segs(clips["b"], clips["truncated"]), media.FinalOptions(),
                                   workdir / "t1.mp4"),
                 media.build_final(segs(clips["b"], clips["truncated"]),
                                   media.FinalOptions(transition="crossfade"),
                                   workdir / "t2.mp4")):
        with pytest.raises(media.MediaError) as broken:
            await call
        assert broken.value.code == "media_corrupt", broken.value.message
    assert not (workdir / "t1.mp4").exists() and not (workdir / "t2.mp4").exists()

    with pytest.raises(media.MediaError) as short:
        await media.build_final(segs(clips["a"], clips["b"], clips["c"]),
                                media.FinalOptions(transition="crossfade",
                                                   crossfade_seconds=1.5), workdir / "t3.mp4")
    assert short.value.code == "media_too_short" and "clip 1" in short.value.message


# --------------------------------------------------------------------------- frames


async def test_last_frame_is_the_very_last(workdir: Path) -> None:
    # 46 green frames, one red, one blue; B-frames, so decode order is not display order; and
    # the audio outlasts the picture by 1.5 s, so the first look at the end finds no frame
    clip = await write_clip(workdir / "ending.mp4",
                            [("30a050", 46), ("d02040", 1), ("2040d0", 1)], audio_seconds=3.5)
    data = await media.last_frame(clip)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    assert (img.format, img.size) == ("PNG", (320, 180))
    assert near(png_colour(data), (0x20, 0x40, 0xD0))


async def test_poster_is_a_jpeg(clips: dict[str, Path]) -> None:
    data = await media.poster(clips["a"])
    assert data[:3] == b"\xff\xd8\xff"
    img = Image.open(io.BytesIO(data))
    assert (img.format, img.size) == ("JPEG", (320, 180))
    assert near(png_colour(data), colour("a"))
    small = Image.open(io.BytesIO(await media.poster(clips["tall"], at=99, width=90)))
    assert small.size == (90, 160)


# --------------------------------------------------------------------------- the final video


async def assert_in_order(path: Path, names: list[str], middles: list[float]) -> None:
    for name, t in zip(names, middles, strict=True):
        got = await colour_at(path, t)
        assert near(got, colour(name)), f"at {t}s: {got}, expected clip {name} {colour(name)}"


async def test_fast_path_copies_and_keeps_order(clips: dict[str, Path], workdir: Path) -> None:
    out = workdir / "fast.mp4"
    res = await media.build_final(segs(clips["a"], clips["b"], clips["c"]),
                                  media.FinalOptions(), out)
    assert res.fast_path
    assert abs(res.duration - 6.0) < 0.03
    assert await frame_count(out) == 3 * 48
    data = out.read_bytes()
    assert res.size == len(data)
    import hashlib
    assert res.sha256 == hashlib.sha256(data).hexdigest()
    # the renderer's clips are x264 "ultrafast" (Constrained Baseline); a re-encode makes High
    assert (await media.probe(out)).video.profile == "Constrained Baseline"
    await assert_in_order(out, ["a", "b", "c"], [1.0, 3.0, 5.0])
    # and in another order, the film follows the segments, not the inputs' names
    res2 = await media.build_final(segs(clips["c"], clips["a"], clips["b"]),
                                   media.FinalOptions(), workdir / "fast2.mp4")
    assert res2.fast_path
    await assert_in_order(workdir / "fast2.mp4", ["c", "a", "b"], [1.0, 3.0, 5.0])


async def test_mismatched_clip_is_fitted_into_the_first_clips_frame(
        clips: dict[str, Path], workdir: Path) -> None:
    out = workdir / "mixed.mp4"
    assert (await media.probe(clips["c30"])).video.fps == 30.0
    res = await media.build_final(segs(clips["a"], clips["tall"], clips["c30"]),
                                  media.FinalOptions(), out)
    assert not res.fast_path
    p = await media.probe(out)
    assert (p.video.width, p.video.height, p.video.fps, p.video.profile) == \
        (320, 180, 24.0, "High")
    assert abs(res.duration - 6.0) < 0.03
    assert await frame_count(out) == 3 * 48
    await assert_in_order(out, ["a", "tall", "c"], [1.0, 3.0, 5.0])
    # the 9:16 clip is scaled to fit the height and padded with black at the sides; the 30 fps
    # one is resampled to 24 fps (2 s, 48 frames)
    tall_frame = await frame_at(out, 3.0)
    assert near(tall_frame.getpixel((5, 90)), (0, 0, 0), 12)  # type: ignore[arg-type]
    assert near(tall_frame.getpixel((160, 5)), colour("tall"))  # type: ignore[arg-type]


async def test_crossfade_overlaps_each_seam(clips: dict[str, Path], workdir: Path) -> None:
    out = workdir / "xfade.mp4"
    res = await media.build_final(segs(clips["a"], clips["b"], clips["c"]),
                                  media.FinalOptions(transition="crossfade",
                                                     crossfade_seconds=0.5), out)
    assert not res.fast_path
    assert abs(res.duration - (6.0 - 2 * 0.5)) < 0.03
    assert await frame_count(out) == 3 * 48 - 2 * 12
    # a: 0-2 s, b: 1.5-3.5 s, c: 3-5 s; fades at 1.5-2.0 and 3.0-3.5
    await assert_in_order(out, ["a", "b", "c"], [0.7, 2.5, 4.3])
    mid = await colour_at(out, 1.75)
    a, b = colour("a"), colour("b")
    blend = tuple((x + y) // 2 for x, y in zip(a, b, strict=True))
    assert near(mid, blend, 24), (mid, a, b)  # type: ignore[arg-type]


async def test_trims_drop_exactly_the_given_frames(clips: dict[str, Path],
                                                   workdir: Path) -> None:
    # 3 frames at start and 5 at end of every clip, plus 2 more at the start of the middle one
    out = workdir / "trimmed.mp4"
    segments = [media.Segment(clips["a"]), media.Segment(clips["b"], trim_start_frames=2),
                media.Segment(clips["c"])]
    res = await media.build_final(segments, media.FinalOptions(trim_start_frames=3,
                                                               trim_end_frames=5), out)
    assert not res.fast_path
    frames = 3 * (48 - 8) - 2
    assert await frame_count(out) == frames
    assert abs(res.duration - frames / 24) < 0.015
    await assert_in_order(out, ["a", "b", "c"], [0.8, 2.5, 4.1])

    # the frames removed are the first and last ones: a clip that starts with 3 red frames and
    # ends with 5 frozen blue ones comes out all green
    seam = await write_clip(workdir / "seam.mp4", [("d02040", 3), ("30a050", 40),
                                                   ("2040d0", 5)], audio_seconds=2.0)
    out2 = workdir / "trimmed2.mp4"
    await media.build_final([media.Segment(seam, 3, 5)], media.FinalOptions(), out2)
    assert await frame_count(out2) == 40
    green = (0x30, 0xA0, 0x50)
    assert near(png_colour(await media.last_frame(out2)), green)
    assert near(await colour_at(out2, 0), green)


async def test_loudnorm_brings_the_film_to_minus_16_lufs(clips: dict[str, Path],
                                                         workdir: Path) -> None:
    before = await loudness(clips["a"])
    assert before < -19  # the renderer's tones sit near -22 LUFS
    for opts in (media.FinalOptions(loudnorm=True),
                 media.FinalOptions(transition="crossfade", loudnorm=True)):
        out = workdir / f"loud-{opts.transition}.mp4"
        res = await media.build_final(segs(clips["a"], clips["b"], clips["c"]), opts, out)
        assert res.fast_path == (opts.transition == "cut")  # only the audio is re-encoded
        assert abs(await loudness(out) + 16) < 1.0


async def test_silent_clip_contributes_silence(clips: dict[str, Path], workdir: Path) -> None:
    out = workdir / "with-silence.mp4"
    res = await media.build_final(segs(clips["a"], clips["silent"], clips["b"]),
                                  media.FinalOptions(), out)
    assert not res.fast_path
    p = await media.probe(out)
    assert p.audio is not None and p.audio.sample_rate == 44100
    assert abs(res.duration - 6.0) < 0.03
    await assert_in_order(out, ["a", "c", "b"], [1.0, 3.0, 5.0])
    assert await max_volume(out, 2.2, 1.6) < -80
    assert await max_volume(out, 0.2, 1.6) > -40
    # no clip with audio: the film has none, and joins on the fast path
    res2 = await media.build_final(segs(clips["silent"], clips["silent"]),
                                   media.FinalOptions(), workdir / "all-silent.mp4")
    assert res2.fast_path
    assert (await media.probe(workdir / "all-silent.mp4")).audio is None


# --------------------------------------------------------------------------- over http


@pytest.fixture
async def s3(s3_server: str, s3_bucket: str) -> AsyncIterator[S3Storage]:
    st = S3Storage(s3_bucket, endpoint=s3_server, access_key="test", secret_key="test",
                   region="us-east-1")
    yield st
    await st.close()


async def test_presigned_urls_are_read_by_ffmpeg(s3: S3Storage, clips: dict[str, Path],
                                                 workdir: Path) -> None:
    urls = {}
    for name in ("a", "b", "c"):
        await s3.put_bytes(f"outputs/job/{name}.mp4", clips[name].read_bytes(), "video/mp4")
        url = await s3.presign(f"outputs/job/{name}.mp4")
        assert url and "X-Amz-Signature" in url
        urls[name] = url
    assert await media.probe(urls["a"]) == await media.probe(clips["a"])
    assert near(png_colour(await media.last_frame(urls["b"])), colour("b"))
    assert near(png_colour(await media.poster(urls["c"])), colour("c"))
    for opts in (media.FinalOptions(), media.FinalOptions(transition="crossfade")):
        out = workdir / f"remote-{opts.transition}.mp4"
        res = await media.build_final([media.Segment(urls[n]) for n in "abc"], opts, out)
        assert res.fast_path == (opts.transition == "cut")
        middles = [1.0, 3.0, 5.0] if res.fast_path else [0.7, 2.5, 4.3]
        await assert_in_order(out, ["a", "b", "c"], middles)
    missing = await s3.presign("outputs/job/none.mp4")
    assert missing
    with pytest.raises(media.MediaError) as gone:
        await media.probe(missing)
    assert gone.value.code == "media_unavailable"
    assert "X-Amz" not in gone.value.message  # a presigned query string is a credential


@pytest.fixture
def https_server(workdir: Path) -> Iterator[tuple[str, Path]]:
    """An https server for ``workdir`` with a self-signed certificate; yields (base URL, the
    certificate's PEM file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = workdir / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile = workdir / "key.pem"
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(workdir)))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem, keyfile)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", pem
    server.shutdown()
    server.server_close()


async def test_https_is_verified_against_the_ca_bundle(
        https_server: tuple[str, Path], clips: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    base, pem = https_server
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(pem))
        media._child_env.cache_clear()
        assert await media.probe(f"{base}/a.mp4") == await media.probe(clips["a"])
        # an unknown certificate is refused: verification is on
        monkeypatch.delenv("SSL_CERT_FILE")
        media._child_env.cache_clear()
        with pytest.raises(media.MediaError) as refused:
            await media.probe(f"{base}/a.mp4")
        assert refused.value.code == "media_unavailable"
        assert "certificate verify failed" in refused.value.message
    finally:
        media._child_env.cache_clear()


# --------------------------------------------------------------------------- process hygiene


async def test_cancel_and_timeout_leave_no_ffmpeg_behind(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    long = workdir / "long.mp4"
    long.write_bytes(await mp4.render(ident("long"), duration=30.0))
    task = asyncio.create_task(media.build_final(
        segs(long, long), media.FinalOptions(transition="crossfade"), workdir / "never.mp4"))
    for _ in range(1000):  # cancel in the middle of an encode, the longest kind of run
        if ffmpeg_children("libx264"):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail(f"the build never started encoding: {task}")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ffmpeg_children() == []
    assert not (workdir / "never.mp4").exists()

    monkeypatch.setattr(media, "FRAME_TIMEOUT", 0.01)
    with pytest.raises(media.MediaError) as slow:
        await media.last_frame(long)
    assert slow.value.code == "media_timeout" and slow.value.retryable
    assert ffmpeg_children() == []


async def test_ffmpeg_runs_below_the_workers_priority(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Posters, probes and finals share the cores with the worker's event loop (key picks,
    heartbeats, polls) and PostgreSQL: every ffmpeg runs 10 steps nicer than the worker."""
    spy = tmp_path / "ffmpeg"
    spy.write_text('#!/bin/sh\necho "niceness $(nice)" >&2\n')
    spy.chmod(0o755)
    monkeypatch.setattr(media, "ffmpeg_exe", lambda: str(spy))
    ran = await media._run(["-version"], limit=10, what="spy", light=True)
    assert ran.rc == 0
    assert f"niceness {os.nice(0) + 10}" in ran.err
