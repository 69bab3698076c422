"""Paste generated faces back into frames on the device, matching the spec's PIL blend (§6).

Inside the paste box the official result is `out = G*m + F*(1-m)` computed by PIL's integer
blend: `div255(F*(255-m) + G*m)`, where `div255(x) = ((t >> 8) + t) >> 8` with `t = x + 128`
is x/255 rounded to nearest (checked against Pillow in the tests). Outside the box the frame
is untouched, so only the box region travels to the device and back. `G` is first resized to
the box with bilinear interpolation (cv2.resize's default: half-pixel centres, no
antialiasing), which torch's `interpolate(mode="bilinear", align_corners=False)` reproduces
to within one level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812


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


def resize_bilinear(face: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[3, 256, 256] uint8 -> [3, height, width] uint8 like cv2.resize(..., INTER_LINEAR)."""
    resized = F.interpolate(
        face[None].float(), size=(height, width), mode="bilinear", align_corners=False
    )
    return resized[0].round().clamp(0, 255).to(torch.uint8)


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
