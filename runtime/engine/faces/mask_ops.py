"""The blend-mask rules of `mask_rules.py` as tensor work on the device (spec §6).

Same steps, same order, for frames already on the GPU: the crop around the box (black outside
the frame), PIL's resizes (antialiased bilinear to 512 in, bicubic back out; each pass rounded
to whole levels, horizontal first, as PIL), the jaw morphology (OpenCV's dilation and erosion
with the same kernels, as max-pools over the 0/1 map, which is exact), the cheek strips
and the Gaussian blur (OpenCV's kernel, reflected borders). The morphology is exact; the resizes
and the blur can differ from PIL's and OpenCV's fixed-point arithmetic by a level on some pixels
(tests bound it).
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from runtime.engine.faces.mask_rules import (
    MOUTH_AND_LIPS,
    NECK,
    NOSE,
    SKIN,
    UPPER_BOUNDARY_RATIO,
    blur_kernel_size,
    cheek_mask,
    jaw_dilation_kernel,
    jaw_erosion_kernel,
)
from runtime.engine.options import BlendMode, MaskBlur


def crop_rgb_levels(frame_bgr: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """`mask_rules.crop_rgb` on the device: uint8 [H, W, 3] BGR -> float32 [3, h, w] RGB levels,
    black where the box leaves the frame."""
    x1, y1, x2, y2 = box
    height, width = frame_bgr.shape[:2]
    out = torch.zeros(3, y2 - y1, x2 - x1, device=frame_bgr.device)
    vx1, vy1, vx2, vy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if vx2 > vx1 and vy2 > vy1:
        region = frame_bgr[vy1:vy2, vx1:vx2].flip(-1).permute(2, 0, 1)
        out[:, vy1 - y1 : vy2 - y1, vx1 - x1 : vx2 - x1] = region
    return out


def pil_resize(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """PIL's `resize` of uint8 levels (antialiased `bilinear` or `bicubic`), [C, h, w] float ->
    [C, size_h, size_w] float whole levels: horizontal pass, rounded, then vertical, rounded."""
    out_h, out_w = size
    x = image[None]
    if x.shape[-1] != out_w:
        x = F.interpolate(x, size=(x.shape[-2], out_w), mode=mode, antialias=True)
        x = x.round().clamp(0, 255)
    if x.shape[-2] != out_h:
        x = F.interpolate(x, size=(out_h, out_w), mode=mode, antialias=True)
        x = x.round().clamp(0, 255)
    return x[0]


@cache
def _segments(name: str) -> tuple[tuple[int, int, int, int], ...]:
    """The kernel as runs of identical horizontal segments: (dy, rows, dx_lo, dx_hi) relative to
    its centre anchor. Both morphology kernels are a segment per row (asserted)."""
    kernel = jaw_dilation_kernel() if name == "dilate" else jaw_erosion_kernel()
    anchor_y, anchor_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    runs: list[tuple[int, int, int, int]] = []
    for row in range(kernel.shape[0]):
        cols = np.flatnonzero(kernel[row])
        if not len(cols):
            continue
        if cols[-1] - cols[0] + 1 != len(cols):
            raise ValueError(f"{name} kernel row {row} is not one segment")
        lo, hi = int(cols[0]) - anchor_x, int(cols[-1]) - anchor_x
        dy = row - anchor_y
        if runs and runs[-1][2:] == (lo, hi) and runs[-1][0] + runs[-1][1] == dy:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, lo, hi)
        else:
            runs.append((dy, 1, lo, hi))
    return tuple(runs)


def _dilate(binary: torch.Tensor, name: str) -> torch.Tensor:
    """OpenCV's `dilate` of a 0/1 map [B, 1, H, W] (anchor at the centre, nothing from
    outside): the maximum over the kernel's taps, as one separable max-pool per run of equal
    rows. Exact, and without convolutions (cuDNN has no fast kernel for a 33x33 single-channel
    filter: about 45 ms for 32 masks)."""
    height, width = binary.shape[-2:]
    runs = _segments(name)
    pad = max(max(abs(dy), abs(dy + rows - 1), -lo, hi) for dy, rows, lo, hi in runs)
    padded = F.pad(binary, (pad, pad, pad, pad))
    out = torch.zeros_like(binary)
    for dy, rows, lo, hi in runs:
        window = padded
        if rows > 1:
            window = F.max_pool2d(window, (rows, 1), stride=1)
        if hi > lo:
            window = F.max_pool2d(window, (1, hi - lo + 1), stride=1)
        top, left = dy + pad, lo + pad
        out = torch.maximum(out, window[..., top : top + height, left : left + width])
    return out


def _erode(binary: torch.Tensor, name: str) -> torch.Tensor:
    """OpenCV's `erode` (outside the map counts as set): the complement of dilating the
    complement."""
    return 1 - _dilate(1 - binary, name)


@cache
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The lip classes and the cheek strips on the device, copied there once."""
    lips = torch.tensor(MOUTH_AND_LIPS, device=device)
    return lips, torch.from_numpy(cheek_mask() > 0).to(device)


def region_masks(classes: torch.Tensor, mode: BlendMode) -> torch.Tensor:
    """`mask_rules.region_mask` for class maps [B, 512, 512] -> 0/1 float [B, 512, 512]."""
    lip_classes, cheeks = _constants(classes.device)
    lips = torch.isin(classes, lip_classes)
    if mode == "raw":
        return ((classes == SKIN) | lips).float()
    if mode == "neck":
        return ((classes == SKIN) | lips | (classes == NECK)).float()
    skin = (classes == SKIN).float()[:, None]
    dilated = _dilate(skin, "dilate")
    eroded = _erode(_erode(dilated, "erode"), "erode")
    reshaped = torch.where(cheeks, eroded, dilated)[:, 0] > 0.5
    return ((reshaped & (classes != NOSE)) | lips).float()


@cache
def _blur_matrix(side: int, size: int, device: torch.device) -> torch.Tensor:
    """[side, side] matrix B with B @ x = OpenCV's 1-D Gaussian of x (its kernel for `size`,
    sigma 0) with the default reflect-101 border folded in: the blur becomes two matrix
    products (cuBLAS, fp32) instead of convolutions whose cuDNN kernels are picked per size."""
    weights = cv2.getGaussianKernel(size, 0)[:, 0]
    sources = np.arange(side)[:, None] + np.arange(size)[None, :] - size // 2
    if side > 1:  # reflect-101: ... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ...
        period = 2 * side - 2
        sources %= period
        sources = np.where(sources >= side, period - sources, sources)
    else:
        sources[:] = 0
    matrix = np.zeros((side, side))
    np.add.at(
        matrix, (np.repeat(np.arange(side), size), sources.reshape(-1)), np.tile(weights, side)
    )
    return torch.from_numpy(matrix.astype(np.float32)).to(device)


def finish_mask(
    region: torch.Tensor,
    box: tuple[int, int, int, int],
    crop: tuple[int, int, int, int],
    blur: MaskBlur,
) -> torch.Tensor:
    """`mask_rules.finish_mask` on the device: 0/1 [512, 512] -> uint8 [2s, 2s]."""
    side = crop[2] - crop[0]
    resized = pil_resize((region * 255)[None], (side, side), "bicubic")[0]
    inside = torch.zeros_like(resized)
    left, top = max(box[0] - crop[0], 0), max(box[1] - crop[1], 0)
    right, bottom = min(box[2] - crop[0], side), min(box[3] - crop[1], side)
    inside[top:bottom, left:right] = resized[top:bottom, left:right]
    inside[: int(side * UPPER_BOUNDARY_RATIO)] = 0
    blur_matrix = _blur_matrix(side, blur_kernel_size(side, blur), region.device)
    blurred = blur_matrix @ inside @ blur_matrix.T  # rows (x) then columns (y): separable
    return blurred.round().clamp(0, 255).to(torch.uint8)
