"""Poison inputs made on the fly: files that are small on disk but hostile to a media pipeline.

Shared by the chaos benchmark (`bench.chaos`) and the tests of hostile input; it imports nothing
from the project, so neither depends on the other through it.
"""

from __future__ import annotations

import struct
import wave
import zlib
from pathlib import Path

import numpy as np


def _png(
    path: Path, width: int, height: int, row: bytes, *, depth: int = 8, rows: int | None = None
) -> Path:
    """A greyscale PNG (`depth` bits a sample) whose every row is `row` (so it compresses to
    almost nothing); with `rows`, only that many rows of data follow the header."""
    compressor = zlib.compressobj(9)
    line = b"\x00" + row
    count = height if rows is None else rows
    data = b"".join(compressor.compress(line) for _ in range(count)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def huge_png(path: Path, width: int, height: int) -> Path:
    """A grey gradient of `width` x `height` pixels that is well under a megabyte on disk."""
    return _png(path, width, height, bytes((x * 7) % 256 for x in range(width)))


def deep_png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """A 16-bit greyscale `width` x `height` PNG of one colour, 2 bytes a pixel decoded (the
    decoder allocates them all when it reads the header); `rows`: truncated after that many."""
    return _png(path, width, height, bytes(2 * width), depth=16, rows=rows)


def flat_png(path: Path, size: int = 96) -> Path:
    """One flat colour: an image without a face."""
    return _png(path, size, size, bytes([128]) * size)


def wav(path: Path, samples: np.ndarray, rate: int = 16_000) -> Path:
    """16-bit mono WAV of float samples in [-1, 1]."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def tone_wav(path: Path, seconds: float, frequency: float, rate: int = 16_000) -> Path:
    """Audible, speech-loud content; each frequency gives different bytes (distinct content)."""
    t = np.arange(round(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)  # syllable-like loudness changes
    return wav(path, 0.4 * envelope * np.sin(2 * np.pi * frequency * t), rate)


def silent_wav(path: Path, seconds: float, rate: int = 16_000) -> Path:
    """Digital silence: audio without speech."""
    return wav(path, np.zeros(round(seconds * rate)), rate)
