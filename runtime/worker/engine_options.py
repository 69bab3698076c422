"""The one seam between the job schema and the engine's own types.

A job carries the service contract's options and the stack's limits (`runtime.common.jobs`,
`runtime.common.limits`, validated by the API); the engine takes its own (`runtime.engine.options`,
`runtime.engine.untrusted.DecodeLimits`) and fails with its own reasons: a `Failure`
(`runtime.engine.engine_contract`) or, from its decoders, a refusal of untrusted media
(`runtime.engine.untrusted.RefusedMedia`). Here the job's options and limits become the
engine's, and the engine's failures and refusals the job's error codes, so neither side imports
the other's types.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from runtime.common import jobs
from runtime.common.limits import LaneLimits, Limits
from runtime.engine import options as engine
from runtime.engine.engine_contract import Failure
from runtime.engine.engine_contract import MediaError as EngineMediaError
from runtime.engine.untrusted import (
    DETECTOR_MIN_SIDE,
    DecodeLimits,
    OverlongAudio,
    OversizedMedia,
    RefusedMedia,
)
from runtime.worker.media_errors import MediaError

ERROR_CODES: dict[Failure, jobs.ErrorCode] = {
    Failure.INVALID_MEDIA: jobs.ErrorCode.INVALID_MEDIA,
    Failure.NO_FACE: jobs.ErrorCode.NO_FACE,
    Failure.NO_SPEECH: jobs.ErrorCode.NO_SPEECH,
    Failure.MEDIA_TOO_LARGE: jobs.ErrorCode.MEDIA_TOO_LARGE,
    Failure.OUT_OF_MEMORY: jobs.ErrorCode.OUT_OF_MEMORY,
}


def avatar_options(options: jobs.AvatarOptions) -> engine.AvatarOptions:
    return engine.AvatarOptions(
        bbox_shift=options.bbox_shift,
        extra_margin=options.extra_margin,
        fps=options.fps,
        blend_mode=options.blend_mode,
        mask_blur=options.mask_blur,
    )


def render_options(options: jobs.RenderOptions) -> engine.RenderOptions:
    return engine.RenderOptions(
        skip_silence=options.skip_silence, sync_threshold=options.sync_threshold
    )


def decode_limits(limits: Limits, lane: LaneLimits | None = None) -> DecodeLimits:
    """The stack's limits for the engine's decoders (a lane's audio limit when given)."""
    defaults = DecodeLimits()
    return DecodeLimits(
        max_pixels=limits.max_video_pixels,
        min_side=DETECTOR_MIN_SIDE,
        max_decoded_bytes=limits.max_decoded_avatar_bytes,
        max_audio_seconds=lane.max_audio_seconds if lane else defaults.max_audio_seconds,
    )


def error_code(failure: Failure) -> jobs.ErrorCode:
    return ERROR_CODES[failure]


def refusal_code(refused: RefusedMedia) -> jobs.ErrorCode:
    if isinstance(refused, OverlongAudio):
        return jobs.ErrorCode.AUDIO_TOO_LONG
    if isinstance(refused, OversizedMedia):
        return jobs.ErrorCode.MEDIA_TOO_LARGE
    return jobs.ErrorCode.INVALID_MEDIA


@contextmanager
def engine_failures() -> Iterator[None]:
    """Re-raise the engine's media failures and its decoders' refusals as the worker's
    `MediaError` with the job's code: the job fails at once, never a retry."""
    try:
        yield
    except EngineMediaError as error:
        raise MediaError(error_code(error.failure), error.message) from error
    except RefusedMedia as refused:
        raise MediaError(refusal_code(refused), str(refused)) from refused
