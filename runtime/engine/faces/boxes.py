"""The face box MuseTalk v1.5 crops and pastes: landmark "half-face" rule (spec §3.4-3.6).

Pure arithmetic on int32 landmarks and the S3FD box, kept apart from the networks so every
branch of the rule is testable with synthetic landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOSE_BRIDGE_MID = 29  # iBUG-68 index whose y (plus bbox_shift) is the box's vertical centre


@dataclass(frozen=True)
class FaceBox:
    """Half-open frame-pixel box, v1.5 extra margin applied; the same box is cropped and pasted.

    `y2` never exceeds the frame height; `x2` may exceed the frame width exactly as upstream's
    landmark box can (the crop is then clipped by slicing, the paste by the frame).
    """

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1


def landmark_box(
    landmarks: np.ndarray, detected: tuple[int, int, int, int], *, bbox_shift: int
) -> tuple[int, int, int, int]:
    """Box from 68 int landmarks, or the S3FD box when the landmark box is unusable (§3.4).

    The top edge sits as far above landmark 29 (shifted by `bbox_shift`) as the lowest landmark
    is below it. Upstream writes the shift into landmark 29 in place before taking the maximum,
    so the shifted point takes part in `max_y`; this copy does the same.
    """
    lm = np.asarray(landmarks, dtype=np.int64).copy()
    lm[NOSE_BRIDGE_MID, 1] += bbox_shift
    centre_y = int(lm[NOSE_BRIDGE_MID, 1])
    max_y = int(lm[:, 1].max())
    y1 = int(max(0, centre_y - (max_y - centre_y)))
    x1, x2, y2 = int(lm[:, 0].min()), int(lm[:, 0].max()), max_y
    if y2 - y1 <= 0 or x2 - x1 <= 0 or x1 < 0:
        return detected
    return x1, y1, x2, y2


def with_extra_margin(
    box: tuple[int, int, int, int], *, extra_margin: int, frame_height: int
) -> FaceBox:
    """v1.5: extend the bottom edge by `extra_margin` pixels, clamped to the frame height."""
    x1, y1, x2, y2 = box
    return FaceBox(x1, y1, x2, min(y2 + extra_margin, frame_height))


def overlaps_frame(box: FaceBox, frame_width: int, frame_height: int) -> bool:
    """Whether the crop `frame[y1:y2, x1:x2]` is non-empty (upstream would crash otherwise)."""
    return (
        box.x2 > box.x1
        and box.y2 > box.y1
        and box.x1 < frame_width
        and box.y1 < frame_height
        and box.x2 > 0
        and box.y2 > 0
    )


def bbox_shift_range(landmarks: np.ndarray) -> tuple[int, int]:
    """The diagnostic range upstream prints: [-mean(lm30.y - lm29.y), +mean(lm29.y - lm28.y)]."""
    lm = np.asarray(landmarks, dtype=np.int64).reshape(-1, 68, 2)
    minus = int(-np.mean(lm[:, 30, 1] - lm[:, 29, 1]))
    plus = int(np.mean(lm[:, 29, 1] - lm[:, 28, 1]))
    return minus, plus
