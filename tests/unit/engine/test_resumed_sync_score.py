"""A resumed render's sync score covers the whole clip: each segment reports its score sums, the
caller keeps them with the segment, and the resumed render adds them to its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.engine.avatar import PreparedAvatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.engine_contract import (
    Interrupted,
    Rendered,
    Segment,
    SegmentPlan,
    SyncSums,
    segment_file_name,
)
from runtime.engine.options import AvatarOptions, RenderOptions
from tests.unit.engine.conftest import write_wav

NO_SKIP = RenderOptions(skip_silence=False)
SEGMENT = 16  # frames (one SyncNet window): the 36-frame clip makes segments of 16, 16 and 4


@pytest.fixture(scope="module")
def speech(speech_16k: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.44 s of speech: 36 frames at 25 fps."""
    path = tmp_path_factory.mktemp("speech") / "speech-1.44s.wav"
    return write_wav(path, speech_16k[6400 : 6400 + 23040], 16000)


@pytest.fixture(scope="module")
def avatar(engine: MuseTalkEngine, short_video: Path) -> PreparedAvatar:
    return engine.prepare(short_video, AvatarOptions())


def render(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    audio: Path,
    work: Path,
    *,
    start_frame: int = 0,
    sums_before: SyncSums | None = None,
    stop_after_frames: int | None = None,
) -> tuple[Rendered | None, list[Segment]]:
    reported: list[Segment] = []
    composed = [0]
    plan = SegmentPlan(
        directory=work,
        frames_per_segment=SEGMENT,
        start_frame=start_frame,
        on_segment=reported.append,
        sync_sums_before=sums_before,
    )
    try:
        rendered = engine.speak(
            avatar,
            audio,
            work / "out.mp4",
            options=NO_SKIP,
            segments=plan,
            progress=lambda done, total: composed.__setitem__(0, done),
            should_stop=lambda: stop_after_frames is not None and composed[0] >= stop_after_frames,
        )
    except Interrupted:
        return None, reported
    return rendered, reported


def test_an_interrupted_and_resumed_render_scores_like_an_uninterrupted_one(
    engine: MuseTalkEngine, avatar: PreparedAvatar, speech: Path, tmp_path: Path
) -> None:
    # Given the real engine with its SyncNet scorer (tiny random weights) and a 36-frame clip
    assert engine.scorer is not None
    whole, whole_segments = render(engine, avatar, speech, tmp_path / "whole")
    assert whole is not None
    assert whole.sync_confidence is not None
    # And each full segment reported its sums (the 4-frame one is shorter than a window)
    assert [s.sync_sums is not None for s in whole_segments] == [True, True, False]

    # When a render is stopped after its first segment
    first, first_segments = render(
        engine, avatar, speech, tmp_path / "first", stop_after_frames=SEGMENT
    )
    assert first is None
    assert [s.index for s in first_segments] == [0]
    kept = first_segments[0].sync_sums
    assert kept is not None
    # And another worker resumes it at segment 1 with that segment's sums kept alongside it
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(first_segments[0].path, resumed_dir / segment_file_name(0))
    resumed, _ = render(
        engine,
        avatar,
        speech,
        resumed_dir,
        start_frame=SEGMENT,
        sums_before=kept,
    )

    # Then the resumed render reports the uninterrupted render's score (and offset)
    assert resumed is not None
    assert resumed.resumed_from_frame == SEGMENT
    assert resumed.sync_confidence == pytest.approx(whole.sync_confidence, abs=1e-6)
    assert resumed.sync_offset_frames == whole.sync_offset_frames
