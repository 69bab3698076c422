"""What the engine needs from face location, face parsing and sync scoring.

The real implementations live in `runtime.engine.faces` and `runtime.engine.sync`; the engine
depends only on these shapes, so tests (and other detectors) can be injected through
`MuseTalkEngine(...)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from runtime.engine.options import BlendMode, MaskBlur


class BoxLike(Protocol):
    """Half-open frame-pixel box, v1.5 extra margin applied (crop and paste use the same)."""

    @property
    def x1(self) -> int: ...
    @property
    def y1(self) -> int: ...
    @property
    def x2(self) -> int: ...
    @property
    def y2(self) -> int: ...


class BlendMaskLike(Protocol):
    """Blurred parsing mask over the square crop box C (which may extend past the frame)."""

    @property
    def crop_box(self) -> tuple[int, int, int, int]: ...
    @property
    def mask(self) -> np.ndarray: ...


class FaceLocatorLike(Protocol):
    def locate(
        self,
        frames_bgr: Sequence[np.ndarray] | torch.Tensor,  # a tensor: on the device, uint8 NHWC
        *,
        bbox_shift: int,
        extra_margin: int,
        batch_size: int = 8,
    ) -> Sequence[BoxLike | None]: ...


class FaceParserLike(Protocol):
    # `boxes` are the ones the paired locator returned (faces.FaceBox for the real pair); a
    # parser may require its own box type, so the protocol cannot promise more than Any.
    def blend_masks(
        self,
        frames_bgr: Sequence[np.ndarray] | torch.Tensor,  # a tensor: on the device, uint8 NHWC
        boxes: Sequence[Any],
        *,
        mode: BlendMode = "jaw",
        blur: MaskBlur = "realtime",
        batch_size: int = 8,
    ) -> Sequence[BlendMaskLike]: ...


class SyncScoreLike(Protocol):
    @property
    def confidence(self) -> float: ...
    @property
    def offset_frames(self) -> int: ...


class SyncScorerLike(Protocol):
    def score(self, faces_rgb: np.ndarray, audio_16k: np.ndarray, fps: float) -> SyncScoreLike: ...
