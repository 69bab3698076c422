"""Output frames in I420 (yuv420p, what libx264 takes), converting only what a job changes.

Composed in BGR, every output frame cost the host a full-frame copy and a full-frame OpenCV
BGR -> I420 conversion (2.5 MB and ~1 ms at 1216x704) on the cores libx264 needs: on an H100's
host the encoder, not the GPU, set the end-to-end pace. OpenCV's conversion is local to each
2x2 block (luma per pixel, chroma from the block's four pixels), so converting the source frame
once per avatar and, per output frame, only the pasted box widened to even bounds gives exactly
the bytes of converting the whole composed frame (tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, eq=False)
class I420Frame:
    """A frame in OpenCV's `COLOR_BGR2YUV_I420` layout: [height * 3 / 2, width] uint8 (Y, then
    U and V at half resolution), width and height even."""

    data: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the picture."""
        return self.data.shape[1], self.data.shape[0] * 2 // 3


def even_crop(frame_bgr: np.ndarray) -> np.ndarray:
    """yuv420p needs even dimensions: an odd last row/column is dropped."""
    height, width = frame_bgr.shape[:2]
    return frame_bgr[: height & ~1, : width & ~1]


def to_i420(frame_bgr: np.ndarray) -> I420Frame:
    """BT.601 limited range, as the encoder's own conversion of BGR frames does."""
    return I420Frame(cv2.cvtColor(even_crop(frame_bgr), cv2.COLOR_BGR2YUV_I420))


class SourceFrames:
    """An avatar's source frames in I420, each converted the first time a render composes it
    (a job touches only the frames its clip cycles through, a 10 s clip 250 of a long avatar's)
    and kept for the jobs after it."""

    def __init__(self, frames_bgr: np.ndarray) -> None:
        self._frames = frames_bgr
        height, width = (size & ~1 for size in frames_bgr.shape[1:3])
        self._i420 = np.empty((len(frames_bgr), height * 3 // 2, width), dtype=np.uint8)
        self._ready = np.zeros(len(frames_bgr), dtype=bool)

    def __getitem__(self, index: int) -> I420Frame:
        # Two threads converting one frame at once write the same bytes: no lock needed.
        if not self._ready[index]:
            self._i420[index] = to_i420(self._frames[index]).data
            self._ready[index] = True
        return I420Frame(self._i420[index])

    @property
    def converted(self) -> int:
        return int(self._ready.sum())

    @property
    def nbytes(self) -> int:
        """Host bytes once every frame is converted (reserved, filled on use)."""
        return self._i420.nbytes


def paste_region(
    base: I420Frame, source_bgr: np.ndarray, region_bgr: np.ndarray, x: int, y: int
) -> I420Frame:
    """`base` (= `to_i420(source_bgr)`) with `region_bgr` pasted at (x, y): the same bytes as
    `to_i420` of the source with the region pasted, for the cost of converting the region."""
    width, height = base.size
    region = region_bgr[: max(0, height - y), : max(0, width - x)]
    rows, cols = region.shape[:2]
    if rows == 0 or cols == 0:
        return base
    x1, y1 = x & ~1, y & ~1
    x2, y2 = min((x + cols + 1) & ~1, width), min((y + rows + 1) & ~1, height)
    patch = source_bgr[y1:y2, x1:x2].copy()
    patch[y - y1 : y - y1 + rows, x - x1 : x - x1 + cols] = region
    converted = cv2.cvtColor(patch, cv2.COLOR_BGR2YUV_I420)
    out = base.data.copy()
    for whole, part, step in zip(
        _planes(out, width, height), _planes(converted, x2 - x1, y2 - y1), (1, 2, 2), strict=True
    ):
        whole[y1 // step : y2 // step, x1 // step : x2 // step] = part
    return I420Frame(out)


def _planes(data: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """Views of the Y, U and V planes of an I420 buffer."""
    flat = data.reshape(-1)
    luma, chroma = width * height, (width // 2) * (height // 2)
    return (
        flat[:luma].reshape(height, width),
        flat[luma : luma + chroma].reshape(height // 2, width // 2),
        flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, width // 2),
    )
