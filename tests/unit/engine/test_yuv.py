"""Output frames composed in I420 (`runtime/engine/yuv.py`) are the bytes a whole-frame
conversion of the composed BGR frame gives."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.engine.media import VideoWriter
from runtime.engine.yuv import I420Frame, SourceFrames, paste_region, to_i420


def composed_then_converted(source: np.ndarray, region: np.ndarray, x: int, y: int) -> np.ndarray:
    frame = source.copy()
    rows = min(region.shape[0], frame.shape[0] - y)
    cols = min(region.shape[1], frame.shape[1] - x)
    frame[y : y + rows, x : x + cols] = region[:rows, :cols]
    height, width = frame.shape[0] & ~1, frame.shape[1] & ~1
    return cv2.cvtColor(frame[:height, :width], cv2.COLOR_BGR2YUV_I420)


@pytest.mark.parametrize(
    ("height", "width", "x", "y", "rows", "cols"),
    [
        (64, 96, 10, 6, 20, 30),  # even corner, even size
        (64, 96, 11, 7, 21, 31),  # odd corner, odd size: chroma blocks shared with the source
        (65, 97, 70, 40, 25, 27),  # odd frame (last row/column dropped), region past its edge
        (64, 96, 0, 0, 64, 96),  # the whole frame
    ],
)
def test_pasting_into_the_source_i420_equals_converting_the_composed_frame(
    height: int, width: int, x: int, y: int, rows: int, cols: int
) -> None:
    # Given a source frame, its I420, and a generated region
    rng = np.random.default_rng(height * width + x)
    source = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    region = rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)
    base = to_i420(source)
    before = base.data.copy()
    # When the region is pasted in I420
    pasted = paste_region(base, source, region, x, y)
    # Then the bytes are those of converting the composed BGR frame, and the source's I420
    # (shared by every output frame of that source) is untouched
    assert np.array_equal(pasted.data, composed_then_converted(source, region, x, y))
    assert np.array_equal(base.data, before)
    assert pasted.size == (width & ~1, height & ~1)


def test_a_region_wholly_outside_the_even_picture_leaves_the_source_frame() -> None:
    # Given a 5x5 frame (4x4 in I420) and a region at its dropped last column
    source = np.full((5, 5, 3), 90, dtype=np.uint8)
    base = to_i420(source)
    # When pasted there, Then nothing changes
    assert paste_region(base, source, np.zeros((2, 1, 3), np.uint8), 4, 0) is base


def test_a_writer_refuses_an_i420_frame_of_another_size(tmp_path: Path) -> None:
    # Given a 64x48 stream, When a 96x48 I420 frame is written, Then it is refused by size
    writer = VideoWriter(tmp_path / "out.mp4", width=64, height=48, fps=25, audio_path=None)
    with writer, pytest.raises(ValueError, match="64x48"):
        writer.write(I420Frame(np.zeros((48 * 3 // 2, 96), np.uint8)))


def test_source_frames_convert_each_frame_once_on_first_use() -> None:
    # Given three odd-sized source frames
    frames = np.random.default_rng(7).integers(0, 256, (3, 9, 11, 3), dtype=np.uint8)
    sources = SourceFrames(frames)
    # When frame 2 is asked for twice
    first, again = sources[2], sources[2]
    # Then only it was converted, once, to what a whole-frame conversion gives
    assert sources.converted == 1
    assert np.array_equal(first.data, to_i420(frames[2]).data)
    assert np.shares_memory(first.data, again.data)
    assert first.size == (10, 8)
