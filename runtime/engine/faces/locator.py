"""Where the face is in each frame: S3FD presence + DWPose landmarks -> v1.5 FaceBox (spec §3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from runtime.engine.faces.boxes import FaceBox, landmark_box, overlaps_frame, with_extra_margin
from runtime.engine.faces.dwpose import DWPose
from runtime.engine.faces.precision import resolve_face_dtype
from runtime.engine.faces.s3fd import S3FD

S3FD_WEIGHTS = Path("s3fd/s3fd-619a316812.pth")
DWPOSE_WEIGHTS = Path("dwpose/dw-ll_ucoco_384.pth")
# DWPose crops are 288x384 whatever the frame size: on a GPU four times the detector's batch
# costs little memory and amortises the per-batch overhead.
GPU_LANDMARK_BATCH_FACTOR = 4

# Frames per S3FD batch in `locate` (AOT packages of S3FD are built for it, `aot_prepare`).
LOCATE_BATCH = 8


class FaceLocator:
    """Batched S3FD + DWPose + the landmark box rule; None marks a frame without a face."""

    def __init__(
        self, detector: S3FD, landmarker: DWPose, *, landmark_batch_factor: int = 1
    ) -> None:
        self.detector = detector
        self.landmarker = landmarker
        self.landmark_batch_factor = landmark_batch_factor

    @classmethod
    def load(
        cls, models_dir: Path, device: torch.device, dtype: torch.dtype | None = None
    ) -> FaceLocator:
        """Both networks in `dtype` (default: `faces.precision`'s for the device)."""
        dtype = resolve_face_dtype(dtype, device)
        return cls(
            S3FD.load(models_dir / S3FD_WEIGHTS, device, dtype),
            DWPose.load(models_dir / DWPOSE_WEIGHTS, device, dtype),
            landmark_batch_factor=GPU_LANDMARK_BATCH_FACTOR if device.type == "cuda" else 1,
        )

    def locate(
        self,
        frames_bgr: Sequence[np.ndarray] | torch.Tensor,
        *,
        bbox_shift: int,
        extra_margin: int,
        batch_size: int = LOCATE_BATCH,
    ) -> list[FaceBox | None]:
        """One box per frame. S3FD decides whether there is a face; the landmarks shape the box.

        `frames_bgr`: host frames, or one uint8 [N, H, W, 3] tensor on the models' device, for
        which the networks' pre- and post-processing runs there too, batched
        (`S3FD.detect_on_device`, `DWPose.face_landmarks_on_device`).
        A box that misses the frame entirely (possible only with nonsense detections) is also
        reported as None, where upstream would crash on the empty crop.
        """
        landmark_batch = batch_size * self.landmark_batch_factor
        if isinstance(frames_bgr, torch.Tensor):
            detections = self.detector.detect_on_device(frames_bgr, batch_size=batch_size)
        else:
            detections = self.detector.detect(frames_bgr, batch_size=batch_size)
        # Upstream runs DWPose on faceless frames too and then ignores it; skipping them is free.
        found = [(i, detected) for i, detected in enumerate(detections) if detected is not None]
        if isinstance(frames_bgr, torch.Tensor):
            with_face = frames_bgr
            if len(found) < len(frames_bgr):
                index = [i for i, _ in found]
                with_face = frames_bgr[torch.tensor(index, device=frames_bgr.device)]
            landmarks = self.landmarker.face_landmarks_on_device(
                with_face, batch_size=landmark_batch
            )
        else:
            landmarks = self.landmarker.face_landmarks(
                [frames_bgr[i] for i, _ in found], batch_size=landmark_batch
            )
        boxes: list[FaceBox | None] = [None] * len(frames_bgr)
        for (i, detected), lm in zip(found, landmarks, strict=True):
            height, width = frames_bgr[i].shape[:2]
            box = with_extra_margin(
                landmark_box(lm, detected, bbox_shift=bbox_shift),
                extra_margin=extra_margin,
                frame_height=height,
            )
            boxes[i] = box if overlaps_frame(box, width, height) else None
        return boxes
