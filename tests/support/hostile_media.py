"""Hostile media made on the fly, one function per shape of attack: channel counts and layouts,
sample formats, codecs and containers, resolution changes mid-stream, duration lies, bombs and
truncations. Each returns the file it wrote; `corpus` lists every case for the fuzz test."""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench.poison_media import deep_png, flat_png, huge_png, tone_wav

Make = Callable[[Path], Path]


def pcm_wav(
    path: Path, channels: int, seconds: float = 0.2, rate: int = 16_000, width: int = 2
) -> Path:
    """PCM WAV (`width` bytes a sample) without a channel mask (FFmpeg guesses the layout, or
    has none to guess)."""
    t = np.arange(round(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * 2**31).astype("<i4")
    if width == 1:
        samples = ((tone >> 24) + 128).astype(np.uint8)[:, None]
    else:  # the top `width` bytes of each little-endian 32-bit sample
        samples = tone.view(np.uint8).reshape(-1, 4)[:, 4 - width :]
    frames = np.repeat(samples[:, None, :], channels, axis=1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(frames.tobytes())
    return path


def float_wav(path: Path, channels: int, rate: int = 16_000, seconds: float = 0.2) -> Path:
    """IEEE float WAV (format tag 3): FFmpeg decodes it to packed `flt`."""
    data = np.zeros((round(seconds * rate), channels), "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def encoded_audio(
    path: Path, codec: str, layout: str, *, seconds: float = 0.3, rate: int = 48_000
) -> Path:
    """`seconds` of a tone through `codec` (container from the suffix), in `layout`."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        channels = stream.codec_context.channels
        size = stream.codec_context.frame_size or 1024
        fmt = stream.format.packed  # PyAV 18 cannot build planar frames of 8+ channels
        samples = 0
        while samples < seconds * rate:
            t = (samples + np.arange(size)) / rate
            tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            data = np.repeat(tone[:, None], channels, axis=1).reshape(1, -1)
            if fmt.name in {"s16", "s32"}:
                bits = 8 * fmt.bytes - 1
                data = (data * (2**bits - 1)).astype(np.int16 if fmt.name == "s16" else np.int32)
            frame = av.AudioFrame.from_ndarray(data, format=fmt.name, layout=layout)
            frame.sample_rate, frame.pts = rate, samples
            for packet in stream.encode(frame):
                out.mux(packet)
            samples += size
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _ts_part(width: int, height: int, frames: int, first_pts: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "51"}
        for i in range(frames):
            picture = np.full((height, width, 3), 90 + i, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = first_pts + i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def resolution_switch_ts(path: Path, big: tuple[int, int] = (7680, 4320), frames: int = 2) -> Path:
    """MPEG-TS whose H.264 stream starts at 64x64 (what the header says) and switches to `big`
    after ten frames: MPEG-TS parts concatenate into one stream."""
    path.write_bytes(_ts_part(64, 64, 10, 0) + _ts_part(*big, frames, 10))
    return path


def tiny_video(
    path: Path,
    width: int,
    height: int,
    frames: int = 3,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fps: int = 25,
) -> Path:
    """`frames` flat frames through `codec` (container from the suffix) at `fps`."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=none"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 60 + i, np.uint8))
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def tiny_png(path: Path, side: int = 2) -> Path:
    return flat_png(path, side)


def adts_duration_lie(path: Path, head_seconds: float = 1.0, tail_seconds: float = 70.0) -> Path:
    """AAC ADTS with a loud high-bitrate second, then a long quiet stretch at a low bitrate:
    FFmpeg estimates the duration from the first frames' bitrate, far below the real one."""
    rate = 16_000
    with av.open(str(path), "w", format="adts") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        size = 1024
        samples = 0
        rng = np.random.default_rng(0)
        while samples < (head_seconds + tail_seconds) * rate:
            loud = samples < head_seconds * rate
            block = rng.uniform(-0.9, 0.9, size) if loud else np.zeros(size)
            frame = av.AudioFrame.from_ndarray(
                block.astype(np.float32).reshape(1, -1), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, samples
            for packet in stream.encode(frame):
                out.mux(packet)
            samples += size
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def adts_format_switch(path: Path) -> Path:
    """ADTS AAC whose stream switches from mono 16 kHz to stereo 48 kHz (ADTS concatenates)."""
    first = encoded_audio(path.with_suffix(".a.aac"), "aac", "mono", rate=16_000)
    second = encoded_audio(path.with_suffix(".b.aac"), "aac", "stereo", rate=48_000)
    path.write_bytes(first.read_bytes() + second.read_bytes())
    return path


def truncated(source: Make, keep: float) -> Make:
    """`source`'s file cut to its first `keep` fraction of bytes."""

    def make(path: Path) -> Path:
        made = source(path)
        data = made.read_bytes()
        made.write_bytes(data[: max(1, int(len(data) * keep))])
        return made

    return make


def garbage(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def audio_corpus() -> dict[str, tuple[str, Make]]:
    """Hostile audio by name: (file suffix, maker)."""
    cases: dict[str, tuple[str, Make]] = {}
    for channels in (1, 2, 6, 7, 8, 9, 16, 32, 33, 64):
        cases[f"wav-s16-{channels}ch"] = (".wav", lambda p, c=channels: pcm_wav(p, c))
    for channels in (2, 8, 16):
        cases[f"wav-flt-{channels}ch"] = (".wav", lambda p, c=channels: float_wav(p, c))
    cases["wav-u8-8ch"] = (".wav", lambda p: pcm_wav(p, 8, width=1))
    cases["wav-s24-8ch"] = (".wav", lambda p: pcm_wav(p, 8, width=3))
    cases["wav-s32-8ch"] = (".wav", lambda p: pcm_wav(p, 8, width=4))
    cases["wav-rate-10000"] = (".wav", lambda p: pcm_wav(p, 2, rate=10_000))
    cases["wav-rate-1hz"] = (".wav", lambda p: float_wav(p, 1, rate=1, seconds=3))
    cases["wav-rate-768k"] = (".wav", lambda p: float_wav(p, 1, rate=768_000, seconds=0.05))
    cases["flac-7.1"] = (".flac", lambda p: encoded_audio(p, "flac", "7.1"))
    cases["opus-7.1"] = (".ogg", lambda p: encoded_audio(p, "libopus", "7.1"))
    cases["aac-stereo"] = (".m4a", lambda p: encoded_audio(p, "aac", "stereo"))
    cases["aac-5.1"] = (".m4a", lambda p: encoded_audio(p, "aac", "5.1"))
    cases["mp3-stereo"] = (".mp3", lambda p: encoded_audio(p, "libmp3lame", "stereo"))
    cases["ac3-5.1"] = (".ac3", lambda p: encoded_audio(p, "ac3", "5.1"))
    cases["mp2-stereo"] = (".mp2", lambda p: encoded_audio(p, "mp2", "stereo"))
    cases["adts-duration-lie"] = (".aac", lambda p: adts_duration_lie(p, 1.0, 70.0))
    cases["adts-format-switch"] = (".aac", adts_format_switch)
    cases["wav-truncated"] = (".wav", truncated(lambda p: tone_wav(p, 1.0, 300), 0.5))
    cases["wav-header-only"] = (".wav", truncated(lambda p: tone_wav(p, 1.0, 300), 0.01))
    cases["opus-truncated"] = (".ogg", truncated(lambda p: encoded_audio(p, "libopus", "7.1"), 0.6))
    cases["garbage"] = ("", garbage)
    return cases


def avatar_corpus() -> dict[str, tuple[str, Make]]:
    """Hostile avatars by name: (file suffix, maker)."""
    return {
        "png-16bit-16000": (".png", lambda p: deep_png(p, 16_000, 16_000, rows=64)),
        "png-4500": (".png", lambda p: huge_png(p, 4500, 4500)),
        "png-2x2": (".png", lambda p: tiny_png(p, 2)),
        "png-truncated": (".png", truncated(lambda p: huge_png(p, 640, 480), 0.5)),
        "mp4-2x2": (".mp4", lambda p: tiny_video(p, 2, 2)),
        "mp4-96x96": (".mp4", lambda p: tiny_video(p, 96, 96)),
        "mp4-frame-count-bomb": (".mp4", lambda p: tiny_video(p, 64, 64, 120)),
        "mp4-1000fps": (".mp4", lambda p: tiny_video(p, 64, 64, 10, fps=1000)),
        "webm-vp8": (".webm", lambda p: tiny_video(p, 96, 96, codec="libvpx")),
        "avi-mjpeg": (".avi", lambda p: tiny_video(p, 96, 96, codec="mjpeg", pix_fmt="yuvj420p")),
        "gif": (".gif", lambda p: tiny_video(p, 96, 96, codec="gif", pix_fmt="rgb8")),
        "mkv-hevc": (".mkv", lambda p: tiny_video(p, 96, 96, codec="libx265")),
        "mkv-ffv1-16bit": (
            ".mkv",
            lambda p: tiny_video(p, 96, 96, codec="ffv1", pix_fmt="yuv444p16le"),
        ),
        "mov-prores": (
            ".mov",
            lambda p: tiny_video(p, 96, 96, codec="prores", pix_fmt="yuv422p10le"),
        ),
        "mp4-truncated": (".mp4", truncated(lambda p: tiny_video(p, 96, 96, 10), 0.5)),
        "ts-switch-to-8k": (".ts", resolution_switch_ts),
        "ts-switch-to-128": (".ts", lambda p: resolution_switch_ts(p, (128, 128), 3)),
        "garbage": ("", garbage),
    }
