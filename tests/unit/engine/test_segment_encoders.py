"""Parallel segment encoders: how many by default, speak's own split of a long clip, and the
mp4's audio prepared beside the frames (no scratch file left behind)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.engine import speak_pipeline
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.engine_contract import SegmentPlan, default_segment_encoders
from runtime.engine.options import AvatarOptions, RenderOptions
from runtime.engine.segments import SegmentedVideoWriter
from tests.unit.engine.conftest import count_frames, decode_frames

NO_SKIP = RenderOptions(skip_silence=False)


@pytest.mark.parametrize(("cores", "encoders"), [(1, 1), (4, 1), (7, 1), (8, 2), (16, 2), (96, 2)])
def test_hosts_of_eight_cores_or_more_get_two_segment_encoders(cores: int, encoders: int) -> None:
    # Given a host of `cores` cores / When the default is picked / Then small hosts get one
    assert default_segment_encoders(cores) == encoders


@pytest.fixture(scope="module")
def avatar(engine: MuseTalkEngine, short_video: Path) -> PreparedAvatar:
    return engine.prepare(short_video, AvatarOptions())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255**2 / error)


def test_speak_splits_a_long_clip_across_encoders_into_the_same_video(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    short_speech: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a 20-frame clip rendered by one writer, and "long" meaning over 10 frames, split in 6
    one = engine.speak(avatar, short_speech, tmp_path / "one.mp4", options=NO_SKIP)
    monkeypatch.setattr(speak_pipeline, "SPLIT_MIN_FRAMES", 10)
    monkeypatch.setattr(speak_pipeline, "SPLIT_SEGMENT_FRAMES", 6)
    monkeypatch.setattr(engine, "segment_encoders", 2)
    out_dir = tmp_path / "split"
    out_dir.mkdir()
    plans: list[SegmentPlan] = []

    class RecordingWriter(SegmentedVideoWriter):
        def __init__(self, plan: SegmentPlan, **kwargs: Any) -> None:
            plans.append(plan)
            super().__init__(plan, **kwargs)

    monkeypatch.setattr(speak_pipeline, "SegmentedVideoWriter", RecordingWriter)

    # When speak renders it without a segment plan
    split = engine.speak(avatar, short_speech, out_dir / "split.mp4", options=NO_SKIP)

    # Then it went through segments (a remux), into an mp4 of every frame with the audio, that
    # looks like the one-writer render (the encoders differ in settings, not the frames in)
    assert "remux" in split.timings_ms
    assert "remux" not in one.timings_ms
    assert count_frames(out_dir / "split.mp4")[:2] == (20, True)
    ours, reference = decode_frames(out_dir / "split.mp4"), decode_frames(tmp_path / "one.mp4")
    assert min(psnr(a, b) for a, b in zip(ours, reference, strict=True)) > 35
    # and its scratch segments and audio are gone
    assert [path.name for path in out_dir.iterdir()] == ["split.mp4"]
    # and its last segment was tapered (the segments of 6, 6 and 8 frames: too short to halve)
    assert [plan.taper for plan in plans] == [True]


def test_speak_refuses_a_tapered_plan_as_a_resumable_one(
    engine: MuseTalkEngine, avatar: PreparedAvatar, short_speech: Path, tmp_path: Path
) -> None:
    # Given a resumable plan that asks for a tapered tail (its boundaries would not match the
    # batches cut at whole segments) / When speak is given it / Then it is refused up front
    plan = SegmentPlan(directory=tmp_path / "segments", taper=True)
    with pytest.raises(ValueError, match="taper"):
        engine.speak(avatar, short_speech, tmp_path / "out.mp4", options=NO_SKIP, segments=plan)
    assert not (tmp_path / "segments").exists()


def test_a_short_clip_is_not_split(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    short_speech: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two encoders allowed but a clip no longer than the split threshold
    monkeypatch.setattr(engine, "segment_encoders", 2)
    monkeypatch.setattr(speak_pipeline, "SPLIT_MIN_FRAMES", 20)

    # When speak renders it / Then one writer did (no remux)
    rendered = engine.speak(avatar, short_speech, tmp_path / "out.mp4", options=NO_SKIP)
    assert "remux" not in rendered.timings_ms


def frames(count: int) -> list[np.ndarray]:
    """Noise: a short segment of flat frames is too small a file for the demuxer's probe."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for _ in range(count)]


def writer(tmp_path: Path, audio: Path, encoders: int) -> SegmentedVideoWriter:
    plan = SegmentPlan(directory=tmp_path / "segments", frames_per_segment=5, encoders=encoders)
    return SegmentedVideoWriter(
        plan,
        out_path=tmp_path / "out.mp4",
        total_frames=12,
        width=96,
        height=64,
        fps=25,
        audio_path=audio,
        preview_audio=False,
    )


@pytest.mark.parametrize("encoders", [1, 3])
def test_the_joined_mp4_carries_the_audio_and_leaves_no_scratch_audio(
    tmp_path: Path, short_speech: Path, encoders: int
) -> None:
    # Given a segmented writer with `encoders` encoders and a speech track
    with writer(tmp_path, short_speech, encoders) as segmented:
        # When 12 frames go through it and it closes
        for frame in frames(12):
            segmented.write(frame)

    # Then the mp4 has every frame and the audio, and only it sits beside the segments
    assert count_frames(tmp_path / "out.mp4")[:2] == (12, True)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.mp4", "segments"]


def test_an_aborted_render_leaves_no_scratch_audio(tmp_path: Path, short_speech: Path) -> None:
    # Given a segmented writer that took 7 of 12 frames
    segmented = writer(tmp_path, short_speech, 2)
    for frame in frames(7):
        segmented.write(frame)

    # When it is aborted
    segmented.abort()

    # Then the finished segment stays, and no mp4 or scratch audio
    assert [path.name for path in tmp_path.iterdir()] == ["segments"]
    assert [path.name for path in (tmp_path / "segments").iterdir()] == ["00000.ts"]
