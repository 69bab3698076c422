"""The blend-mask rules of `parsing.py` as tensor work on the device (spec §6).

Same steps, same order, for frames already on the GPU: the crop around the box (black outside
the frame), PIL's resizes (antialiased bilinear to 512 in, bicubic back out; each pass rounded
to whole levels, horizontal first, as PIL), the jaw morphology (OpenCV's dilation and erosion
with the same kernels, written as convolutions of the 0/1 map, which is exact), the cheek strips
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

from runtime.engine.faces.parsing import (
    MOUTH_AND_LIPS,
    NECK,
    NOSE,
    PARSE_SIZE,
    SKIN,
    UPPER_BOUNDARY_RATIO,
    BlurMode,
    MaskMode,
    blur_kernel_size,
    cheek_mask,
    jaw_dilation_kernel,
    jaw_erosion_kernel,
)


def crop_rgb_levels(frame_bgr: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """`parsing.crop_rgb` on the device: uint8 [H, W, 3] BGR -> float32 [3, h, w] RGB levels,
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
def _kernel(name: str, device: torch.device) -> torch.Tensor:
    kernel = jaw_dilation_kernel() if name == "dilate" else jaw_erosion_kernel()
    return torch.from_numpy(kernel.astype(np.float32)).to(device)[None, None]


def _dilate(binary: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """OpenCV's `dilate` of a 0/1 map [B, 1, H, W] (anchor at the centre, nothing from outside):
    a pixel is set where the kernel, laid over it, covers a set pixel (a correlation)."""
    kh, kw = kernel.shape[-2:]
    hits = F.conv2d(binary, kernel, padding=(kh // 2, kw // 2))
    return (hits > 0.5).to(binary.dtype)


def _erode(binary: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """OpenCV's `erode` (outside the map counts as set): the complement of dilating the
    complement."""
    return 1 - _dilate(1 - binary, kernel)


def region_masks(classes: torch.Tensor, mode: MaskMode) -> torch.Tensor:
    """`parsing.region_mask` for a batch of class maps [B, 512, 512] -> 0/1 float [B, 512, 512]."""
    lips = torch.isin(classes, torch.tensor(MOUTH_AND_LIPS, device=classes.device))
    if mode == "raw":
        return ((classes == SKIN) | lips).float()
    if mode == "neck":
        return ((classes == SKIN) | lips | (classes == NECK)).float()
    skin = (classes == SKIN).float()[:, None]
    dilated = _dilate(skin, _kernel("dilate", classes.device))
    eroded = dilated
    for _ in range(2):
        eroded = _erode(eroded, _kernel("erode", classes.device))
    cheeks = torch.from_numpy(cheek_mask() > 0).to(classes.device)
    reshaped = torch.where(cheeks, eroded, dilated)[:, 0] > 0.5
    return ((reshaped & (classes != NOSE)) | lips).float()


@cache
def _gaussian(size: int, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(cv2.getGaussianKernel(size, 0).astype(np.float32)[:, 0]).to(device)


def finish_mask(
    region: torch.Tensor,
    box: tuple[int, int, int, int],
    crop: tuple[int, int, int, int],
    blur: BlurMode,
) -> torch.Tensor:
    """`parsing.finish_mask` on the device: 0/1 [512, 512] -> uint8 [2s, 2s]."""
    side = crop[2] - crop[0]
    resized = pil_resize((region * 255)[None], (side, side), "bicubic")[0]
    inside = torch.zeros_like(resized)
    left, top = max(box[0] - crop[0], 0), max(box[1] - crop[1], 0)
    right, bottom = min(box[2] - crop[0], side), min(box[3] - crop[1], side)
    inside[top:bottom, left:right] = resized[top:bottom, left:right]
    inside[: int(side * UPPER_BOUNDARY_RATIO)] = 0
    k = blur_kernel_size(side, blur)
    weights = _gaussian(k, region.device)
    pad = k // 2
    x = inside[None, None]
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), weights.view(1, 1, 1, k))
    x = F.conv2d(F.pad(x, (0, 0, pad, pad), mode="reflect"), weights.view(1, 1, k, 1))
    return x[0, 0].round().clamp(0, 255).to(torch.uint8)


__all__ = ["PARSE_SIZE", "crop_rgb_levels", "finish_mask", "pil_resize", "region_masks"]
