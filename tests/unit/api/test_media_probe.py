"""Audio duration from headers: right for WAV and MP4 (moov first or last), cheap, and None
(not a guess) for anything else."""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.api.media_probe import audio_duration_seconds

MEDIA = Path(__file__).resolve().parents[3] / "examples" / "media"


class Reads:
    """A ranged reader over bytes that counts what it was asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.bytes_read = 0
        self.calls = 0

    def __call__(self, start: int, length: int) -> bytes:
        self.calls += 1
        chunk = self.data[start : start + length]
        self.bytes_read += len(chunk)
        return chunk


def _duration(data: bytes) -> tuple[float | None, Reads]:
    reads = Reads(data)
    return audio_duration_seconds(reads, len(data)), reads


@pytest.mark.parametrize(("name", "seconds"), [("eng.wav", 60.0), ("yongen.wav", 8.0)])
def test_wav_duration_comes_from_the_header(name: str, seconds: float) -> None:
    duration, reads = _duration((MEDIA / name).read_bytes())
    assert duration == pytest.approx(seconds, abs=0.05)
    assert reads.calls == 1
    assert reads.bytes_read <= 64 * 1024


def test_wav_with_a_streaming_size_falls_back_to_the_object_size() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(b"\0\0" * 16000 * 3)
    data = bytearray(buffer.getvalue())
    data[40:44] = b"\xff\xff\xff\xff"  # the data chunk size a streaming writer leaves
    duration, _ = _duration(bytes(data))
    assert duration == pytest.approx(3.0, abs=0.01)


def test_mp4_duration_with_moov_at_the_end_reads_only_box_headers() -> None:
    data = (MEDIA / "yongen.mp4").read_bytes()
    duration, reads = _duration(data)
    assert duration == pytest.approx(10.72, abs=0.01)  # what PyAV reports for this file
    assert reads.bytes_read < 100 * 1024


def test_m4a_written_by_pyav_is_measured() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        samples = np.zeros((1, 1024), dtype=np.float32)
        for index in range(16000 * 5 // 1024):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    duration, _ = _duration(buffer.getvalue())
    assert duration == pytest.approx(5.0, abs=0.2)


@pytest.mark.parametrize(
    "data",
    [
        b"ID3\x04\x00" + b"\0" * 100,  # MP3: left to the worker
        b"RIFF\x10\x00\x00\x00WAVEjunk",  # truncated WAV
        b"\x00\x00\x00\x18ftypisom" + b"\0" * 16,  # MP4 without moov
        b"\x00\x00\x00\x01ftypisom",  # impossible box size
        b"",
    ],
)
def test_unknown_or_broken_headers_give_no_duration(data: bytes) -> None:
    assert _duration(data)[0] is None


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=256)
    | st.builds(
        lambda size, kind, rest: struct.pack(">I4s", size, kind) + rest,
        st.integers(0, 2**32 - 1),
        st.sampled_from([b"ftyp", b"moov", b"mvhd", b"free"]),
        st.binary(max_size=200),
    )
    | st.builds(lambda rest: b"RIFF\0\0\0\0WAVE" + rest, st.binary(max_size=200))
)
def test_any_bytes_give_a_duration_or_none_and_reads_stay_inside_the_object(data: bytes) -> None:
    def read(start: int, length: int) -> bytes:
        assert 0 <= start < len(data)
        assert 0 < length <= len(data) - start
        return data[start : start + length]

    duration = audio_duration_seconds(read, len(data))
    assert duration is None or duration >= 0
