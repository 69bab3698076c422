"""MuseTalk's blend-mask rules on the host: from a face-parsing class map to the mask (spec §6).

The crop around the face box, the region kept per mask mode (the jaw's dilation and erosion, the
cheek strips), and the resize, paste-box cut and blur back in crop coordinates, with OpenCV and
PIL exactly as upstream. `parsing` applies them to the parser's output; `mask_ops` is the same
rules as tensor work on the device, checked against these.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
from PIL import Image

from runtime.engine.faces.boxes import FaceBox
from runtime.engine.options import BlendMode, MaskBlur

PARSE_SIZE = 512
EXPAND = 1.5
UPPER_BOUNDARY_RATIO = 0.5
CHEEK_WIDTH = 90  # Lw = Rw; both upstream scripts pass 90 (the class default is 80)
SKIN, NOSE, NECK = 1, 10, 14
MOUTH_AND_LIPS = (11, 12, 13)
_BLUR_FRACTION: dict[MaskBlur, float] = {"offline": 0.05, "realtime": 0.1}


def crop_box(box: FaceBox, expand: float = EXPAND) -> tuple[int, int, int, int]:
    """The square around the face box that is parsed and blended (side 2s)."""
    xc, yc = (box.x1 + box.x2) // 2, (box.y1 + box.y2) // 2
    s = int(max(box.x2 - box.x1, box.y2 - box.y1) // 2 * expand)
    if s <= 0:
        raise ValueError(f"face box {box} is too small to blend (needs a side of 2 px or more)")
    return xc - s, yc - s, xc + s, yc + s


def blur_kernel_size(side: int, blur: MaskBlur) -> int:
    """Odd Gaussian kernel size: 13 offline and 25 realtime for a 256-pixel crop."""
    return int(_BLUR_FRACTION[blur] * side // 2 * 2) + 1


@cache
def jaw_dilation_kernel() -> np.ndarray:
    """33x33: rows 0-9 empty, rows 10-20 a centred triangle (widths 1..21), rows 21-32 cols 6-26.

    Under OpenCV's dilation (anchor at the centre, no reflection) skin grows up to 16 px upward
    and up to 6 px downward in a tapering point.
    """
    kernel = np.zeros((33, 33), dtype=np.uint8)
    for row in range(10, 21):
        half = row - 10
        kernel[row, 16 - half : 16 + half + 1] = 1
    kernel[21:, 6:27] = 1
    return kernel


@cache
def jaw_erosion_kernel() -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3))


@cache
def cheek_mask(cheek_width: int = CHEEK_WIDTH) -> np.ndarray:
    """255 on the left and right cheek strips, 0 on the central band (inclusive rectangles)."""
    mask = np.zeros((PARSE_SIZE, PARSE_SIZE), dtype=np.uint8)
    centre = PARSE_SIZE // 2
    cv2.rectangle(mask, (0, 0), (centre - cheek_width, PARSE_SIZE - 1), 255, -1)
    cv2.rectangle(mask, (centre + cheek_width, 0), (PARSE_SIZE - 1, PARSE_SIZE - 1), 255, -1)
    return mask


def region_mask(classes: np.ndarray, mode: BlendMode) -> np.ndarray:
    """Binary 0/255 uint8 map of the region the generated face replaces, from a class map."""
    if mode == "raw":
        return np.where(np.isin(classes, (SKIN, *MOUTH_AND_LIPS)), 255, 0).astype(np.uint8)
    if mode == "neck":
        return np.where(np.isin(classes, (SKIN, *MOUTH_AND_LIPS, NECK)), 255, 0).astype(np.uint8)
    skin = np.where(classes == SKIN, 255, 0).astype(np.uint8)
    dilated = cv2.dilate(skin, jaw_dilation_kernel(), iterations=1)
    eroded = cv2.erode(dilated, jaw_erosion_kernel(), iterations=2)
    cheeks = cheek_mask()
    reshaped = cv2.bitwise_or(
        cv2.bitwise_and(eroded, cheeks), cv2.bitwise_and(dilated, cv2.bitwise_not(cheeks))
    )
    keep = ((reshaped == 255) & (classes != NOSE)) | np.isin(classes, MOUTH_AND_LIPS)
    return np.where(keep, 255, 0).astype(np.uint8)


def crop_rgb(frame_bgr: np.ndarray, box: tuple[int, int, int, int]) -> Image.Image:
    """PIL crop semantics: the part of `box` outside the frame is black.

    Only the box is copied (not the whole frame, as `Image.fromarray(frame).crop(box)` would).
    """
    x1, y1, x2, y2 = box
    height, width = frame_bgr.shape[:2]
    out = np.zeros((y2 - y1, x2 - x1, 3), dtype=np.uint8)
    vx1, vy1, vx2, vy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if vx2 > vx1 and vy2 > vy1:
        out[vy1 - y1 : vy2 - y1, vx1 - x1 : vx2 - x1] = frame_bgr[vy1:vy2, vx1:vx2, ::-1]
    return Image.fromarray(out)


def finish_mask(
    parsed: np.ndarray, box: FaceBox, crop: tuple[int, int, int, int], blur: MaskBlur
) -> np.ndarray:
    """512 region mask -> [2s, 2s]: bicubic resize, keep only the paste box, zero above the
    vertical centre, Gaussian blur (spec §6 "Mask construction in crop coordinates")."""
    side = crop[2] - crop[0]
    resized = np.asarray(Image.fromarray(parsed).resize((side, side), Image.Resampling.BICUBIC))
    inside = np.zeros((side, side), dtype=np.uint8)
    left, top = max(box.x1 - crop[0], 0), max(box.y1 - crop[1], 0)
    right, bottom = min(box.x2 - crop[0], side), min(box.y2 - crop[1], side)
    inside[top:bottom, left:right] = resized[top:bottom, left:right]
    inside[: int(side * UPPER_BOUNDARY_RATIO)] = 0
    k = blur_kernel_size(side, blur)
    return cv2.GaussianBlur(inside, (k, k), 0)
