"""Audio duration from container headers, read with a few small ranged reads (stdlib only).

The API rejects over-long audio before a job is queued when the header says so cheaply: WAV (RIFF
`fmt `/`data` chunks) and MP4/M4A (`moov/mvhd`). Anything else (MP3, odd or truncated files)
returns None and the worker enforces the limit after decoding (error AUDIO_TOO_LONG).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

# read(start, length) -> up to `length` bytes at offset `start` (an S3 ranged GET in production).
RangeReader = Callable[[int, int], bytes]

_HEAD_BYTES = 64 * 1024
_MAX_TOP_LEVEL_BOXES = 32


def audio_duration_seconds(read: RangeReader, size: int) -> float | None:
    """Duration in seconds, or None when the header does not say (cheaply)."""

    def bounded(start: int, length: int) -> bytes:
        # Box sizes come from the file: never ask for a range outside the object (S3: 416).
        if start < 0 or start >= size or length <= 0:
            return b""
        return read(start, min(length, size - start))

    return _duration(bounded, size)


def _duration(read: RangeReader, size: int) -> float | None:
    head = read(0, min(size, _HEAD_BYTES))
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wav_duration(head, size)
    if head[4:8] == b"ftyp":
        return _mp4_duration(read, size)
    return None


def _wav_duration(head: bytes, size: int) -> float | None:
    offset = 12
    byte_rate = 0
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_size,) = struct.unpack_from("<I", head, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt " and body + 16 <= len(head):
            (byte_rate,) = struct.unpack_from("<I", head, body + 8)
        elif chunk_id == b"data":
            if byte_rate <= 0:
                return None
            # Streaming writers leave the size at 0 or 0xFFFFFFFF: fall back to the object size.
            data_bytes = chunk_size if 0 < chunk_size < 0xFFFFFFFF else size - body
            return min(data_bytes, size - body) / byte_rate
        offset = body + chunk_size + (chunk_size & 1)
    return None


def _mp4_duration(read: RangeReader, size: int) -> float | None:
    """Walk the top-level boxes (header reads only) to `moov`, then read `mvhd`."""
    offset = 0
    for _ in range(_MAX_TOP_LEVEL_BOXES):
        if offset + 8 > size:
            return None
        header = read(offset, 16)
        if len(header) < 8:
            return None
        box_size, box_type = struct.unpack_from(">I4s", header)
        header_size = 8
        if box_size == 1 and len(header) >= 16:
            (box_size,) = struct.unpack_from(">Q", header, 8)
            header_size = 16
        elif box_size == 0:
            box_size = size - offset
        if box_size < header_size:
            return None
        if box_type == b"moov":
            return _mvhd_duration(read(offset + header_size, min(box_size - header_size, 4096)))
        offset += box_size
    return None


def _mvhd_duration(moov: bytes) -> float | None:
    offset = 0
    while offset + 8 <= len(moov):
        box_size, box_type = struct.unpack_from(">I4s", moov, offset)
        if box_type == b"mvhd":
            body = offset + 8
            if body + 1 > len(moov):
                return None
            version = moov[body]
            if version == 1 and body + 32 <= len(moov):
                timescale, duration = struct.unpack_from(">IQ", moov, body + 20)
            elif version == 0 and body + 20 <= len(moov):
                timescale, duration = struct.unpack_from(">II", moov, body + 12)
            else:
                return None
            return duration / timescale if timescale else None
        if box_size < 8:
            return None
        offset += box_size
    return None
