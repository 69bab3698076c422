"""FaceLocator: S3FD decides presence, landmarks shape the box, v1.5 margin applied."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine.faces import FaceBox, FaceLocator
from tests.unit.faces.test_boxes import face_landmarks


class _Detector:
    def __init__(self, answers: list[tuple[int, int, int, int] | None]) -> None:
        self.answers = answers

    def detect(self, frames: Sequence[np.ndarray], batch_size: int = 8) -> list[object]:
        return self.answers[: len(frames)]


class _Landmarker:
    """Answers per frame by the frame's marker value (its first pixel); records what it saw."""

    def __init__(self, by_marker: dict[int, np.ndarray]) -> None:
        self.by_marker = by_marker
        self.seen: list[int] = []

    def face_landmarks(self, frames: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
        markers = [int(frame[0, 0, 0]) for frame in frames]
        self.seen += markers
        return np.stack([self.by_marker[m] for m in markers])


def test_given_frames_with_and_without_faces_when_located_then_boxes_follow_spec() -> None:
    # Given three 300x400 frames: a face, no face (S3FD), and a face whose landmarks are unusable
    frames = [np.full((300, 400, 3), marker, np.uint8) for marker in range(3)]
    good, broken = face_landmarks(), face_landmarks()
    broken[:, 0] = 150
    s3fd_box = (100, 90, 220, 295)
    landmarker = _Landmarker({0: good, 1: good, 2: broken})
    locator = FaceLocator(
        _Detector([s3fd_box, None, s3fd_box]),  # type: ignore[arg-type]
        landmarker,  # type: ignore[arg-type]
    )
    # When
    boxes = locator.locate(frames, bbox_shift=0, extra_margin=10)
    # Then the landmark box + 10 px, a placeholder, and the S3FD box + margin clamped at 300
    assert boxes == [FaceBox(120, 90, 200, 260), None, FaceBox(100, 90, 220, 300)]
    # and landmarks were not computed for the faceless frame
    assert landmarker.seen == [0, 2]


@pytest.mark.slow
def test_given_random_weights_when_locating_sample_media_then_usable_boxes_come_back(
    models_dir: Path, video_frames: list[np.ndarray], still_frame: np.ndarray, cpu: torch.device
) -> None:
    # Given seeded random S3FD + DWPose, the still avatar and a quarter-size video frame
    locator = FaceLocator.load(models_dir, cpu)
    frames = [still_frame, np.ascontiguousarray(video_frames[1][::4, ::4])]
    # When
    boxes = locator.locate(frames, bbox_shift=0, extra_margin=10, batch_size=2)
    # Then every frame has a non-empty crop inside the frame (what the pipeline needs to run)
    for frame, box in zip(frames, boxes, strict=True):
        assert box is not None
        crop = frame[box.y1 : box.y2, box.x1 : box.x2]
        assert crop.shape[0] > 0
        assert crop.shape[1] > 0
