"""The engine's media refusals as the job's error codes.

The engine's decoders refuse untrusted media with their own exception types
(`runtime.engine.untrusted`); this is where they become permanent job errors: the job fails at
once, never a retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from runtime.common.jobs import ErrorCode
from runtime.common.limits import LaneLimits, Limits
from runtime.engine.untrusted import (
    DETECTOR_MIN_SIDE,
    DecodeLimits,
    OverlongAudio,
    OversizedMedia,
    RefusedMedia,
)
from runtime.worker.media_errors import MediaError


def error_code(refused: RefusedMedia) -> ErrorCode:
    if isinstance(refused, OverlongAudio):
        return ErrorCode.AUDIO_TOO_LONG
    if isinstance(refused, OversizedMedia):
        return ErrorCode.MEDIA_TOO_LARGE
    return ErrorCode.INVALID_MEDIA


def as_media_error(refused: RefusedMedia) -> MediaError:
    return MediaError(error_code(refused), str(refused))


@contextmanager
def refusals_as_media_errors() -> Iterator[None]:
    """Re-raise the engine's `RefusedMedia` as the worker's `MediaError`."""
    try:
        yield
    except RefusedMedia as refused:
        raise as_media_error(refused) from refused


def decode_limits(limits: Limits, lane: LaneLimits | None = None) -> DecodeLimits:
    """The stack's limits for the engine's decoders (a lane's audio limit when given)."""
    defaults = DecodeLimits()
    return DecodeLimits(
        max_pixels=limits.max_video_pixels,
        min_side=DETECTOR_MIN_SIDE,
        max_decoded_bytes=limits.max_decoded_avatar_bytes,
        max_audio_seconds=lane.max_audio_seconds if lane else defaults.max_audio_seconds,
    )
