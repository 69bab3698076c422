"""OpenCV's bilinear `warpAffine`, as one gather over a batch of same-sized frames on the device.

DWPose's top-down crop warps every frame of an avatar with the same matrix (the whole frame is
the box), so the source taps and weights are computed once per frame size on the host, the way
OpenCV 5 computes them (float32 source coordinates, border constant 0), and applied to a whole
batch in one pass instead of one OpenCV call per frame on the host. Against
`cv2.warpAffine(..., flags=INTER_LINEAR)` a few pixels in ten thousand differ by one level (the
order of float rounding; OpenCV 4's fixed-point warp differs from either by up to a few levels).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class WarpPlan:
    """Four source taps per output pixel (flat indices into an [H*W] frame) and the bilinear
    weights along x and y; taps outside the frame read a zero pixel."""

    index: torch.Tensor  # [4, P] int64: (y0, x0), (y0, x1), (y1, x0), (y1, x1)
    inside: torch.Tensor  # [4, P] float32: 1 where the tap is in the frame, else 0
    fx: torch.Tensor  # [P] float32 fraction along x
    fy: torch.Tensor  # [P] float32 fraction along y
    out_size: tuple[int, int]  # (width, height)


def warp_plan(
    matrix: np.ndarray, src_hw: tuple[int, int], out_size: tuple[int, int], device: torch.device
) -> WarpPlan:
    """The taps `cv2.warpAffine(src, matrix, out_size, flags=cv2.INTER_LINEAR)` reads."""
    height, width = src_hw
    out_w, out_h = out_size
    inverse = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64)).astype(np.float32)
    xs = np.arange(out_w, dtype=np.float32)[None, :]
    ys = np.arange(out_h, dtype=np.float32)[:, None]
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0, y0 = np.floor(src_x), np.floor(src_y)
    indices, inside = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            px, py = x0.astype(np.int64) + dx, y0.astype(np.int64) + dy
            valid = (px >= 0) & (px < width) & (py >= 0) & (py < height)
            flat = np.clip(py, 0, height - 1) * width + np.clip(px, 0, width - 1)
            indices.append(flat.reshape(-1))
            inside.append(valid.reshape(-1))
    return WarpPlan(
        index=torch.from_numpy(np.stack(indices)).to(device),
        inside=torch.from_numpy(np.stack(inside).astype(np.float32)).to(device),
        fx=torch.from_numpy((src_x - x0).reshape(-1)).to(device),
        fy=torch.from_numpy((src_y - y0).reshape(-1)).to(device),
        out_size=(out_w, out_h),
    )


def warp_batch(frames: torch.Tensor, plan: WarpPlan) -> torch.Tensor:
    """uint8 [B, H, W, C] frames -> float32 [B, C, out_h, out_w] warped pixels, rounded to whole
    levels 0..255 as OpenCV's uint8 result."""
    batch, height, width, channels = frames.shape
    flat = frames.reshape(batch, height * width, channels)
    taps = [
        flat[:, plan.index[t]].to(torch.float32) * plan.inside[t][None, :, None] for t in range(4)
    ]
    fx, fy = plan.fx[None, :, None], plan.fy[None, :, None]
    top = taps[0] * (1 - fx) + taps[1] * fx
    bottom = taps[2] * (1 - fx) + taps[3] * fx
    pixels = torch.round(top * (1 - fy) + bottom * fy).clamp_(0, 255)
    out_w, out_h = plan.out_size
    return pixels.reshape(batch, out_h, out_w, channels).permute(0, 3, 1, 2)
