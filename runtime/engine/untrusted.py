"""Bounds on decoding untrusted media, measured while decoding rather than read from headers.

Headers lie: a stream can change resolution mid-way, an ADTS file's duration is an estimate
from its first frames, a WAV can declare any channel count. So the decoders check every frame
they produce against `DecodeLimits` and stop as soon as one is passed, with one of the
`RefusedMedia` errors below (the worker maps them to the job's error codes; they are never
worth a retry).

Audio frames are converted to packed (interleaved) samples by libswresample before they reach
numpy: PyAV 18's `AudioFrame.to_ndarray()` reads planar audio of 8 or more channels past the
frame's eight data pointers and crashes the process (SIGSEGV, seen with WAV, FLAC, PCM float
and Opus through a planar resampler, and Opus's own planar output). A packed frame has one
plane whatever its channel count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

GIB = 1024**3
# S3FD pools a frame down five times: below 32 pixels a side it raises instead of answering.
DETECTOR_MIN_SIDE = 32


class RefusedMedia(Exception):
    """Untrusted media the decoders refuse; retrying cannot help."""


class UnreadableMedia(RefusedMedia):
    """Not decodable safely (corrupt, an unsupported layout, too many channels, no samples)."""


class OversizedMedia(RefusedMedia):
    """A frame above the pixel limit, or more decoded bytes in all than the limit."""


class OverlongAudio(RefusedMedia):
    """More audio than the limit, counted in decoded samples."""


@dataclass(frozen=True)
class DecodeLimits:
    """What one decode may produce. The defaults bound a worker host's memory (16 GiB)."""

    max_pixels: int = 3840 * 2160  # per video frame
    min_side: int = 1  # pixels a side (the engine asks for DETECTOR_MIN_SIDE)
    # All decoded BGR frames of one avatar together; preparation stacks them into one array,
    # so the peak is about twice this.
    max_decoded_bytes: int = 5 * GIB
    max_channels: int = 32
    min_sample_rate: int = 8_000
    max_sample_rate: int = 96_000  # AAC's highest: the output's audio keeps the input's rate
    max_audio_seconds: float = 3600.0
    # The output has the avatar's frame rate: 1000 fps would make a minute of speech 60 000
    # frames to render.
    max_fps: float = 60.0


def check_frame_size(width: int, height: int, limits: DecodeLimits, what: str) -> None:
    """OversizedMedia when a `width` x `height` frame has more pixels than the limit."""
    if width * height > limits.max_pixels:
        raise OversizedMedia(
            f"{what}: a {width}x{height} frame exceeds the limit of {limits.max_pixels} pixels"
        )


def check_audio_format(channels: int, rate: int, limits: DecodeLimits, what: str) -> None:
    """UnreadableMedia for channel counts and sample rates outside the limits."""
    if not 1 <= channels <= limits.max_channels:
        raise UnreadableMedia(
            f"{what}: {channels} channels (at most {limits.max_channels} are decoded)"
        )
    if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        raise UnreadableMedia(
            f"{what}: sample rate {rate} Hz (from {limits.min_sample_rate} to"
            f" {limits.max_sample_rate} Hz are decoded)"
        )


def audio_frames(
    container: av.container.InputContainer,
    limits: DecodeLimits,
    *,
    what: str = "audio",
) -> Iterator[tuple[np.ndarray, int]]:
    """The first audio stream as float32 [samples, channels] arrays with their sample rate.

    Every decoded frame is checked (channels and rate may change mid-stream) and counted:
    OverlongAudio as soon as the samples decoded pass `max_audio_seconds`.
    """
    if not container.streams.audio:
        raise UnreadableMedia(f"{what}: no audio stream")
    seconds = 0.0
    resampler: av.AudioResampler | None = None
    shape: tuple[int, int, str] | None = None
    for frame in container.decode(container.streams.audio[0]):
        channels, rate = len(frame.layout.channels), int(frame.sample_rate or 0)
        check_audio_format(channels, rate, limits, what)
        seconds += frame.samples / rate
        if seconds > limits.max_audio_seconds:
            raise OverlongAudio(
                f"{what}: longer than the limit of {limits.max_audio_seconds:.0f} s"
                " (counted while decoding)"
            )
        if resampler is None or shape != (channels, rate, frame.layout.name):
            # swr is configured for one input format: a change mid-stream gets a new one.
            yield from _drained(resampler)
            shape = (channels, rate, frame.layout.name)
            resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=rate)
        for packed in resampler.resample(frame):
            yield packed.to_ndarray().reshape(-1, channels), rate
    yield from _drained(resampler)


def _drained(resampler: av.AudioResampler | None) -> Iterator[tuple[np.ndarray, int]]:
    for packed in [] if resampler is None else resampler.resample(None):
        yield packed.to_ndarray().reshape(-1, len(packed.layout.channels)), packed.sample_rate


def audio_seconds(
    container: av.container.InputContainer, limits: DecodeLimits, *, what: str = "audio"
) -> float:
    """The first audio stream's duration, counted in decoded samples (no numpy conversion).

    The first frame is also mixed down as the output writer will (to stereo): libswresample
    has no matrix for layouts without a channel order it knows (a WAV of 9 channels without a
    channel mask), and such a file must fail here, not in the writer. So must a format change
    mid-stream (sample format, layout or rate), which the writer's resampler refuses.
    """
    if not container.streams.audio:
        raise UnreadableMedia(f"{what}: no audio stream")
    seconds = 0.0
    first: tuple[str, str, int] | None = None
    for frame in container.decode(container.streams.audio[0]):
        channels, rate = len(frame.layout.channels), int(frame.sample_rate or 0)
        check_audio_format(channels, rate, limits, what)
        shape = (frame.format.name, frame.layout.name, rate)
        if first is None:
            first = shape
            _check_mixable(frame, what)
        elif shape != first:  # the writer's resampler takes one input format
            raise UnreadableMedia(
                f"{what}: the audio format changes mid-stream ({first} to {shape})"
            )
        seconds += frame.samples / rate
        if seconds > limits.max_audio_seconds:
            raise OverlongAudio(
                f"{what}: longer than the limit of {limits.max_audio_seconds:.0f} s"
                " (counted while decoding)"
            )
    return seconds


def _check_mixable(frame: av.AudioFrame, what: str) -> None:
    try:
        av.AudioResampler(format="s16", layout="stereo", rate=frame.sample_rate).resample(frame)
    except av.FFmpegError as error:
        raise UnreadableMedia(
            f"{what}: the channel layout {frame.layout.name!r} cannot be mixed down"
        ) from error
