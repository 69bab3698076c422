"""The face's place in a frame: the 256x256 crop taken from a source frame (spec §3.7), the
blend mask under its paste box, and the output frame with the generated region pasted back."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from runtime.engine.avatar import PreparedAvatar
from runtime.engine.blend import PasteBox
from runtime.engine.latents import CROP_SIZE
from runtime.engine.yuv import I420Frame, paste_region

NO_FACE = np.zeros((0, 0, 3), dtype=np.uint8)  # a generated frame the sync scorer will not see


def crop_face(frame: np.ndarray, box: Sequence[int] | np.ndarray) -> np.ndarray:
    """Spec §3.7: frame[y1:y2, x1:x2] stretched to 256x256 with LANCZOS4 (aspect not kept)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return _resize_256(frame[y1:y2, x1:x2])


def _resize_256(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LANCZOS4)


def mask_over_box(
    mask: np.ndarray, crop_box: tuple[int, int, int, int], box: Sequence[int] | np.ndarray
) -> np.ndarray:
    """The part of the crop-box mask under the paste box: outside it the blend changes nothing."""
    cx1, cy1 = crop_box[0], crop_box[1]
    x1, y1, x2, y2 = (int(v) for v in box)
    region = mask[y1 - cy1 : y2 - cy1, x1 - cx1 : x2 - cx1]
    if region.shape != (y2 - y1, x2 - x1):
        raise ValueError("the blend mask's crop box does not contain the face box")
    return np.ascontiguousarray(region, dtype=np.uint8)


def compose_frame(
    avatar: PreparedAvatar,
    output_frame: int,
    source_i420: I420Frame,
    generated: tuple[np.ndarray, np.ndarray] | None,
    *,
    scored: bool,
) -> tuple[I420Frame, np.ndarray]:
    """The output frame (I420), and the 256x256 RGB mouth crop the sync scorer sees for it
    (`scored`: whether one does; else a source frame's crop is not made)."""
    index = avatar.cycle_index(output_frame)
    source = avatar.frames[index]
    box = avatar.boxes[index]
    if generated is None:
        if not scored:
            return source_i420, source
        face = crop_face(source, box) if avatar.has_face[index] else _resize_256(source)
        return source_i420, np.ascontiguousarray(face[..., ::-1])
    region, face_rgb = generated
    height, width = source.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box)
    vx1, vy1, _vx2, _vy2 = PasteBox(x1, y1, x2, y2, width, height).visible
    return paste_region(source_i420, source, region, vx1, vy1), face_rgb
