"""The seam between the job schema and the engine's own types (`runtime.worker.engine_options`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from runtime.common import jobs
from runtime.common.limits import DEFAULT_LIMITS
from runtime.common.names import Lane
from runtime.engine import options as engine
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.engine_contract import Failure, MediaError, OutOfMemory
from runtime.engine.untrusted import (
    DETECTOR_MIN_SIDE,
    OverlongAudio,
    OversizedMedia,
    RefusedMedia,
    UnreadableMedia,
)
from runtime.worker import engine_options
from runtime.worker.media_errors import MediaError as JobMediaError

JOB_AVATAR_OPTIONS = [
    jobs.AvatarOptions(),
    jobs.AvatarOptions(bbox_shift=-40, extra_margin=0, fps=1, blend_mode="raw"),
    jobs.AvatarOptions(bbox_shift=40, extra_margin=40, fps=60, blend_mode="neck"),
    jobs.AvatarOptions(mask_blur="realtime"),
]


def test_the_engine_takes_every_field_of_the_job_options() -> None:
    # A field added to the job's options and not to the engine's would be silently dropped.
    job_fields = list(jobs.AvatarOptions.model_fields)
    assert [field.name for field in dataclasses.fields(engine.AvatarOptions)] == job_fields
    assert {field.name for field in dataclasses.fields(engine.RenderOptions)} == set(
        jobs.RenderOptions.model_fields
    )


@pytest.mark.parametrize("options", JOB_AVATAR_OPTIONS)
def test_a_prepared_avatar_header_keeps_the_bytes_the_job_options_wrote(
    options: jobs.AvatarOptions,
) -> None:
    # Prepared avatars cached in S3 were written with the job options' JSON: the engine's own
    # options write the same header, so cached avatars stay valid and round-trip to equal options.
    translated = engine_options.avatar_options(options)
    assert translated.to_json() == options.model_dump(mode="json")
    assert list(translated.to_json()) == list(options.model_dump(mode="json"))
    assert engine.AvatarOptions.from_json(options.model_dump(mode="json")) == translated


def test_a_header_written_before_an_option_existed_reads_with_its_default() -> None:
    header = jobs.AvatarOptions(bbox_shift=5).model_dump(mode="json")
    del header["mask_blur"]  # written before the blur was an avatar option
    assert engine.AvatarOptions.from_json(header) == engine.AvatarOptions(bbox_shift=5)


def test_a_cached_avatar_from_the_job_options_loads_with_the_engine_options() -> None:
    frames = np.zeros((1, 8, 8, 3), np.uint8)
    prepared = PreparedAvatar(
        frames=frames,
        boxes=np.zeros((1, 4), np.int32),
        has_face=np.zeros(1, bool),
        latents=np.zeros((1, 8, 32, 32), np.float32),
        masks=(np.zeros((2, 2), np.uint8),),
        fps=25.0,
        options=engine_options.avatar_options(JOB_AVATAR_OPTIONS[1]),
        source_sha256="a" * 64,
        model_version=engine.MODEL_VERSION,
    )
    loaded = PreparedAvatar.from_bytes(prepared.to_bytes())
    assert loaded.options == engine.AvatarOptions(
        bbox_shift=-40, extra_margin=0, fps=1, blend_mode="raw"
    )


def test_render_options_carry_over() -> None:
    translated = engine_options.render_options(
        jobs.RenderOptions(skip_silence=False, sync_threshold=0.7)
    )
    assert translated == engine.RenderOptions(skip_silence=False, sync_threshold=0.7)


def test_the_engine_names_the_same_model_the_service_keys_its_caches_on() -> None:
    assert engine.MODEL_VERSION == jobs.MODEL_VERSION


@pytest.mark.parametrize("failure", list(Failure))
def test_every_engine_failure_has_the_job_code_of_its_name(failure: Failure) -> None:
    assert engine_options.error_code(failure) is jobs.ErrorCode(failure.value)


def test_engine_media_failures_become_permanent_job_errors() -> None:
    with pytest.raises(JobMediaError) as raised, engine_options.engine_failures():
        raise MediaError(Failure.NO_FACE, "no face found in any avatar frame")
    assert raised.value.code is jobs.ErrorCode.NO_FACE
    assert raised.value.code.is_permanent
    assert raised.value.message == "no face found in any avatar frame"


def test_out_of_memory_passes_the_seam_untranslated_with_its_batch_size() -> None:
    # The worker hands the job back with a smaller batch: it needs the engine's exception.
    with pytest.raises(OutOfMemory) as raised, engine_options.engine_failures():
        raise OutOfMemory(4)
    assert engine_options.error_code(raised.value.failure) is jobs.ErrorCode.OUT_OF_MEMORY


@pytest.mark.parametrize(
    ("refused", "code"),
    [
        (OverlongAudio("audio: 70 s counted while decoding"), jobs.ErrorCode.AUDIO_TOO_LONG),
        (OversizedMedia("avatar: frame over the pixel limit"), jobs.ErrorCode.MEDIA_TOO_LARGE),
        (UnreadableMedia("audio: no audio stream"), jobs.ErrorCode.INVALID_MEDIA),
        (RefusedMedia("refused"), jobs.ErrorCode.INVALID_MEDIA),
    ],
)
def test_decoder_refusals_become_permanent_job_errors_at_the_same_seam(
    refused: RefusedMedia, code: jobs.ErrorCode
) -> None:
    with pytest.raises(JobMediaError) as raised, engine_options.engine_failures():
        raise refused
    assert raised.value.code is code
    assert raised.value.code.is_permanent
    assert raised.value.message == str(refused)


def test_the_stack_limits_become_the_decoders_limits() -> None:
    lane = DEFAULT_LIMITS.for_lane(Lane.INTERACTIVE)
    limits = engine_options.decode_limits(DEFAULT_LIMITS, lane)
    assert limits.max_pixels == DEFAULT_LIMITS.max_video_pixels
    assert limits.max_decoded_bytes == DEFAULT_LIMITS.max_decoded_avatar_bytes
    assert limits.max_audio_seconds == lane.max_audio_seconds
    # the face detector cannot take a smaller frame
    assert limits.min_side == DETECTOR_MIN_SIDE
