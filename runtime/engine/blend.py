"""Paste generated faces back into frames on the device, matching the spec's PIL blend (§6).

Inside the paste box the official result is `out = G*m + F*(1-m)` computed by PIL's integer
blend: `div255(F*(255-m) + G*m)`, where `div255(x) = ((t >> 8) + t) >> 8` with `t = x + 128`
is x/255 rounded to nearest (checked against Pillow in the tests). Outside the box the frame
is untouched, so only the box region travels to the device and back. `G` is first resized to
the box the way `cv2.resize(G, size)` does it (INTER_LINEAR on uint8: 11-bit fixed-point taps
and OpenCV's vectorised rounding), in integer torch ops, so the composite is bit-exact with the
official one (tests compare against OpenCV and Pillow).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PasteBox:
    """The face box (may extend past the frame on the right or bottom) and the frame size."""

    x1: int
    y1: int
    x2: int
    y2: int
    frame_width: int
    frame_height: int

    @property
    def visible(self) -> tuple[int, int, int, int]:
        """The part of the box inside the frame, in frame coordinates."""
        return (
            max(self.x1, 0),
            max(self.y1, 0),
            min(self.x2, self.frame_width),
            min(self.y2, self.frame_height),
        )


def div255(x: torch.Tensor) -> torch.Tensor:
    """PIL's exact rounded x/255 for 0..255*255 integers (int32 tensors)."""
    t = x + 128
    return ((t >> 8) + t) >> 8


def _linear_taps(
    src: int, dst: int, device: torch.device, *, horizontal: bool
) -> tuple[torch.Tensor, ...]:
    """cv2 INTER_LINEAR taps along one axis: first/second source index, 11-bit weights.

    Half-pixel centres computed in float32 as OpenCV does, weights rounded to nearest (even) at
    a scale of 2048. Past an edge OpenCV moves the whole weight onto the edge pixel
    horizontally, but vertically keeps both weights and reads the edge row twice (their
    rounded sum may differ from 2048, which shows in the result).
    """
    position = ((torch.arange(dst, dtype=torch.float64) + 0.5) * (src / dst) - 0.5).float()
    first = torch.floor(position)
    fraction = position - first
    first = first.to(torch.int64)
    if horizontal:
        fraction[(first < 0) | (first >= src - 1)] = 0
    second = (first + 1).clamp(0, src - 1)
    first = first.clamp(0, src - 1)
    far = torch.round(fraction * 2048).to(torch.int32)
    near = torch.round((1 - fraction) * 2048).to(torch.int32)
    return first.to(device), second.to(device), near.to(device), far.to(device)


def resize_bilinear(face: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[3, H, W] uint8 -> [3, height, width] uint8 as `cv2.resize(..., INTER_LINEAR)` gives it.

    A horizontal pass of integer taps, then a vertical pass with the rounding of OpenCV's SIMD
    kernel: `((S0>>4)*b0 >> 16) + ((S1>>4)*b1 >> 16) + 2 >> 2`.
    """
    device = face.device
    _, src_h, src_w = face.shape
    x0, x1, wx0, wx1 = _linear_taps(src_w, width, device, horizontal=True)
    y0, y1, wy0, wy1 = _linear_taps(src_h, height, device, horizontal=False)
    pixels = face.to(torch.int32)
    rows = pixels[:, :, x0] * wx0 + pixels[:, :, x1] * wx1  # [3, H, width], scale 2048
    top, bottom = rows[:, y0] >> 4, rows[:, y1] >> 4
    mixed = ((top * wy0[:, None]) >> 16) + ((bottom * wy1[:, None]) >> 16)
    return ((mixed + 2) >> 2).clamp(0, 255).to(torch.uint8)


def blend_region(
    frame_region: torch.Tensor, face: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """PIL integer blend of `face` over `frame_region` ([h, w, 3] uint8) with `mask` ([h, w])."""
    m = mask.to(torch.int32)[..., None]
    mixed = frame_region.to(torch.int32) * (255 - m) + face.to(torch.int32) * m
    return div255(mixed).to(torch.uint8)


def paste_faces(
    faces_bgr: torch.Tensor,
    frame_regions: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    boxes: Sequence[PasteBox],
) -> list[torch.Tensor]:
    """Blend each generated face into its frame's visible box region; all on the faces' device.

    `faces_bgr` is [B, 3, 256, 256] uint8; `frame_regions[i]` is the frame's visible box region
    [h, w, 3] uint8 and `masks[i]` the blend mask over the full (unclipped) box [H, W] uint8.
    """
    out = []
    for face, region, mask, box in zip(faces_bgr, frame_regions, masks, boxes, strict=True):
        full = resize_bilinear(face, box.x2 - box.x1, box.y2 - box.y1).permute(1, 2, 0)
        vx1, vy1, vx2, vy2 = box.visible
        ox, oy = vx1 - box.x1, vy1 - box.y1
        window = (slice(oy, oy + vy2 - vy1), slice(ox, ox + vx2 - vx1))
        out.append(blend_region(region, full[window], mask[window]))
    return out
