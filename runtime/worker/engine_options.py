"""The one seam between the job schema and the engine's own types.

A job carries the service contract's options (`runtime.common.jobs`, validated by the API); the
engine takes its own (`runtime.engine.options`) and fails with its own reasons
(`runtime.engine.engine_contract.Failure`). Here the job's options become the engine's, and the
engine's failures the job's error codes, so neither side imports the other's types.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from runtime.common import jobs
from runtime.engine import options as engine
from runtime.engine.engine_contract import Failure
from runtime.engine.engine_contract import MediaError as EngineMediaError
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


def error_code(failure: Failure) -> jobs.ErrorCode:
    return ERROR_CODES[failure]


@contextmanager
def engine_failures() -> Iterator[None]:
    """Re-raise the engine's media failures as the worker's `MediaError` with the job's code."""
    try:
        yield
    except EngineMediaError as error:
        raise MediaError(error_code(error.failure), error.message) from error
