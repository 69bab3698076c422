"""Batches in flight on the device (`MuseTalkEngine.pipeline_depth`) and the compile modes.

On CPU every stage runs to completion when launched, so these pin down the bookkeeping of the
pipelined loop (order, segment boundaries, the last short batch), not its overlap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine.avatar import PreparedAvatar
from runtime.engine.compile_modes import compile_for_speed, split_compile_mode
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.engine_contract import SegmentPlan
from runtime.engine.options import AvatarOptions, RenderOptions
from runtime.engine.stage_timing import StageMarks
from tests.unit.engine.conftest import assert_same_frames, decode_frames

NO_SKIP = RenderOptions(skip_silence=False)


@pytest.fixture(scope="module")
def avatar(engine: MuseTalkEngine, short_video: Path) -> PreparedAvatar:
    return engine.prepare(short_video, AvatarOptions())


def render(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    speech: Path,
    out: Path,
    depth: int,
    segments: SegmentPlan | None = None,
) -> tuple[list[np.ndarray], dict[str, float], list[int]]:
    engine.pipeline_depth = depth
    progress: list[int] = []
    try:
        rendered = engine.speak(
            avatar,
            speech,
            out,
            options=NO_SKIP,
            batch_size=3,  # 20 frames: 7 batches, the last one short
            progress=lambda done, total: progress.append(done),
            segments=segments,
        )
    finally:
        engine.pipeline_depth = MuseTalkEngine.pipeline_depth
    return decode_frames(out), rendered.timings_ms, progress


@pytest.mark.parametrize("segmented", [False, True])
def test_batches_in_flight_render_the_frames_one_batch_at_a_time_renders(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    short_speech: Path,
    tmp_path: Path,
    segmented: bool,
) -> None:
    # Given the simple loop's render (launch a batch, wait for it, hand it over)
    def plan(name: str) -> SegmentPlan | None:
        return SegmentPlan(directory=tmp_path / name, frames_per_segment=8) if segmented else None

    simple, _, simple_progress = render(
        engine, avatar, short_speech, tmp_path / "simple.mp4", 1, plan("simple")
    )
    # When the same clip renders with three batches queued before the oldest is waited for
    queued, timings, progress = render(
        engine, avatar, short_speech, tmp_path / "queued.mp4", 3, plan("queued")
    )
    # Then every frame is the same (up to x264's own run-to-run noise with frame threads),
    # progress still climbs in order to the end
    assert len(queued) == 20
    assert_same_frames(queued, simple)
    assert progress == sorted(progress)
    assert progress[-1] == 20
    assert progress == simple_progress
    # and the per-stage times and the wait for the device are reported
    assert {"unet", "vae_decode", "blend", "gpu_wait"} <= timings.keys()


def test_stage_marks_add_each_stage_once_per_batch() -> None:
    # Given two batches' marks on the CPU (the wall clock)
    timings: dict[str, float] = {}
    for _ in range(2):
        marks = StageMarks(torch.device("cpu"))
        marks.begin()
        marks.end("unet")
        marks.end("vae_decode")
        marks.wait()
        marks.add_to(timings)
    # Then each stage has one accumulated, non-negative time
    assert list(timings) == ["unet", "vae_decode"]
    assert all(ms >= 0 for ms in timings.values())


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (None, (None, None)),
        ("default", (None, None)),
        ("reduce-overhead", ("reduce-overhead", "reduce-overhead")),
        ("reduce-overhead/max-autotune", ("reduce-overhead", "max-autotune")),
        ("default/max-autotune-no-cudagraphs", (None, "max-autotune-no-cudagraphs")),
    ],
)
def test_a_compile_mode_names_one_mode_for_both_models_or_one_each(
    mode: str | None, expected: tuple[str | None, str | None]
) -> None:
    assert split_compile_mode(mode) == expected


@pytest.mark.parametrize("mode", ["fast", "reduce-overhead/", "a/b/c", "max_autotune"])
def test_an_unknown_compile_mode_is_refused_before_anything_compiles(
    engine: MuseTalkEngine, mode: str
) -> None:
    # Given the engine's models, eager
    unet, decoder = engine.generator.unet, engine.codec.vae.decoder
    # When asked to compile them in a mode torch does not have
    with pytest.raises(ValueError, match="compile mode"):
        compile_for_speed(engine.generator, engine.codec, mode=mode)
    # Then it names the problem and leaves the models as they were
    assert engine.generator.unet is unet
    assert engine.codec.vae.decoder is decoder
