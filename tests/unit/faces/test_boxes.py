"""The v1.5 landmark box rule (spec §3.4-3.6) on synthetic landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.engine.faces.boxes import (
    FaceBox,
    bbox_shift_range,
    landmark_box,
    overlaps_frame,
    with_extra_margin,
)

S3FD_BOX = (100, 90, 220, 260)


def face_landmarks(
    *, left: int = 120, right: int = 200, chin: int = 250, nose: int = 170
) -> np.ndarray:
    """68 points spread over [left, right] x [120, chin]; lm28/29/30 on the nose bridge."""
    lm = np.zeros((68, 2), dtype=np.int32)
    lm[:, 0] = np.linspace(left, right, 68).astype(np.int32)
    lm[:, 1] = np.linspace(120, chin, 68).astype(np.int32)
    lm[28] = (160, nose - 8)
    lm[29] = (160, nose)
    lm[30] = (160, nose + 9)
    return lm


def test_given_no_shift_when_boxed_then_top_mirrors_chin_about_landmark_29() -> None:
    # Given landmarks with lm29.y = 170 and the chin at 250
    lm = face_landmarks()
    # When
    box = landmark_box(lm, S3FD_BOX, bbox_shift=0)
    # Then the top is as far above 170 as the chin is below it
    assert box == (120, 170 - (250 - 170), 200, 250)


@pytest.mark.parametrize(("shift", "top"), [(7, 177 - (250 - 177)), (-7, 163 - (250 - 163))])
def test_given_bbox_shift_when_boxed_then_centre_moves_by_shift(shift: int, top: int) -> None:
    # Given a positive (down) or negative (up) shift
    # When
    box = landmark_box(face_landmarks(), S3FD_BOX, bbox_shift=shift)
    # Then the top edge is 2*(lm29.y+shift) - chin, and the other edges stay on the landmarks
    assert box == (120, top, 200, 250)


def test_given_shift_below_the_chin_when_boxed_then_the_shifted_point_sets_max_y() -> None:
    # Given a shift that moves lm29 below every other landmark (upstream shifts it in place)
    lm = face_landmarks()
    # When
    box = landmark_box(lm, S3FD_BOX, bbox_shift=100)
    # Then max_y is the shifted lm29 (270), so d = 0 and the box is 270 - 270 high: fallback
    assert box == S3FD_BOX
    assert lm[29, 1] == 170  # the caller's landmarks are untouched


def test_given_top_above_frame_when_boxed_then_y1_clamps_to_zero() -> None:
    # Given a nose high in the frame and a chin far below
    lm = face_landmarks(nose=60, chin=250)
    lm[28], lm[29], lm[30] = (160, 50), (160, 60), (160, 70)
    # When
    box = landmark_box(lm, S3FD_BOX, bbox_shift=0)
    # Then 60 - 190 < 0 is clamped
    assert box[1] == 0


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda lm: lm.__setitem__((slice(None), 0), 150), id="zero width"),
        pytest.param(lambda lm: lm.__setitem__((0, 0), -3), id="x1 negative"),
        pytest.param(lambda lm: lm.__setitem__((slice(None), 1), 170), id="zero height"),
    ],
)
def test_given_unusable_landmark_box_when_boxed_then_s3fd_box_is_used(broken: object) -> None:
    # Given landmarks whose box is degenerate or starts left of the frame
    lm = face_landmarks()
    broken(lm)  # type: ignore[operator]
    # When / Then
    assert landmark_box(lm, S3FD_BOX, bbox_shift=0) == S3FD_BOX


def test_given_margin_when_applied_then_bottom_extends_and_clamps_to_frame_height() -> None:
    # Given a box whose bottom is 5 px above the frame's bottom edge
    # When a 10 px margin is applied
    box = with_extra_margin((10, 20, 50, 295), extra_margin=10, frame_height=300)
    # Then it stops at the frame height; elsewhere it adds the full margin
    assert box == FaceBox(10, 20, 50, 300)
    assert with_extra_margin((10, 20, 50, 100), extra_margin=10, frame_height=300).y2 == 110


def test_given_boxes_when_checked_against_frame_then_only_empty_crops_are_rejected() -> None:
    assert overlaps_frame(FaceBox(10, 10, 2000, 50), 100, 100)  # x2 beyond the edge is allowed
    assert not overlaps_frame(FaceBox(120, 10, 140, 50), 100, 100)
    assert not overlaps_frame(FaceBox(10, 10, 10, 50), 100, 100)


def test_given_landmarks_when_diagnosed_then_shift_range_is_nose_bridge_spacing() -> None:
    assert bbox_shift_range(face_landmarks()) == (-9, 8)
