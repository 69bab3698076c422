"""Paste generated faces back into frames on the device, matching the spec's PIL blend (§6).

Inside the paste box the official result is `out = G*m + F*(1-m)` computed by PIL's integer
blend: `div255(F*(255-m) + G*m)`, where `div255(x) = ((t >> 8) + t) >> 8` with `t = x + 128`
is x/255 rounded to nearest (checked against Pillow in the tests). Outside the box the frame
is untouched, so only the box region is blended. `G` is first resized to the box the way
`cv2.resize(G, size)` does it (INTER_LINEAR on uint8: 11-bit fixed-point taps and OpenCV's
vectorised rounding), in integer torch ops, so the composite is bit-exact with the official one
(tests compare against OpenCV and Pillow).

The taps are explicit tensors (`AxisTaps`) so that a whole batch of faces can be resized to boxes
of different sizes in one go (`blend_batch`, padded to the largest box) with exactly the
arithmetic of the per-frame path (`paste_faces`): the two give identical bytes.
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

    @property
    def window(self) -> tuple[int, int, int, int]:
        """The visible part in box coordinates: (x offset, y offset, width, height)."""
        vx1, vy1, vx2, vy2 = self.visible
        return vx1 - self.x1, vy1 - self.y1, vx2 - vx1, vy2 - vy1


@dataclass(frozen=True)
class AxisTaps:
    """cv2 bilinear taps on one axis, `[..., n]` each: out ~ (w0*in[i0] + w1*in[i1]) / 2048."""

    i0: torch.Tensor  # int64
    i1: torch.Tensor  # int64
    w0: torch.Tensor  # int32, 11-bit fixed point (sum ~2048)
    w1: torch.Tensor  # int32

    @classmethod
    def of(
        cls,
        in_size: int,
        out_size: int,
        start: int = 0,
        count: int | None = None,
        *,
        horizontal: bool,
    ) -> AxisTaps:
        """cv2 INTER_LINEAR taps for output positions start..start+count of in_size -> out_size.

        Half-pixel centres computed in float32 as OpenCV does, weights rounded to nearest (even)
        at a scale of 2048. Past an edge OpenCV moves the whole weight onto the edge pixel
        horizontally, but vertically keeps both weights and reads the edge row twice (their
        rounded sum may differ from 2048, which shows in the result).
        """
        count = out_size - start if count is None else count
        dst = torch.arange(start, start + count, dtype=torch.float64)
        position = ((dst + 0.5) * (in_size / out_size) - 0.5).float()
        first = torch.floor(position)
        fraction = position - first
        first_index = first.to(torch.int64)
        if horizontal:
            fraction[(first_index < 0) | (first_index >= in_size - 1)] = 0
        second = (first_index + 1).clamp(0, in_size - 1)
        return cls(
            i0=first_index.clamp(0, in_size - 1),
            i1=second,
            w0=torch.round((1 - fraction) * 2048).to(torch.int32),
            w1=torch.round(fraction * 2048).to(torch.int32),
        )

    @classmethod
    def stack(cls, taps: Sequence[AxisTaps], length: int) -> AxisTaps:
        """[B, length] taps, each row zero-padded (index 0, weight 0) past its own length."""

        def padded(values: list[torch.Tensor]) -> torch.Tensor:
            out = values[0].new_zeros((len(values), length))
            for row, value in enumerate(values):
                out[row, : len(value)] = value
            return out

        return cls(
            i0=padded([t.i0 for t in taps]),
            i1=padded([t.i1 for t in taps]),
            w0=padded([t.w0 for t in taps]),
            w1=padded([t.w1 for t in taps]),
        )

    def to(self, device: torch.device) -> AxisTaps:
        return AxisTaps(*(t.to(device) for t in (self.i0, self.i1, self.w0, self.w1)))

    def select(self, index: torch.Tensor) -> AxisTaps:
        """The rows `index` of stacked taps."""
        return AxisTaps(*(t[index] for t in (self.i0, self.i1, self.w0, self.w1)))


def div255(x: torch.Tensor) -> torch.Tensor:
    """PIL's exact rounded x/255 for 0..255*255 integers (int32 tensors)."""
    t = x + 128
    return ((t >> 8) + t) >> 8


def resize_faces(faces: torch.Tensor, rows: AxisTaps, cols: AxisTaps) -> torch.Tensor:
    """[B, C, S, S] uint8 faces -> [B, C, H, W] uint8 by `[B, H]` row taps and `[B, W]` column
    taps (each face its own box size, padded to the largest), as `cv2.resize` rounds.

    A horizontal pass of integer taps, then a vertical pass with the rounding of OpenCV's SIMD
    kernel: `((S0>>4)*b0 >> 16) + ((S1>>4)*b1 >> 16) + 2 >> 2`.
    """
    batch, channels, size, _ = faces.shape
    height, width = rows.i0.shape[1], cols.i0.shape[1]
    pixels = faces.to(torch.int32)

    def take_cols(index: torch.Tensor) -> torch.Tensor:
        return pixels.gather(3, index[:, None, None, :].expand(batch, channels, size, width))

    wx0, wx1 = cols.w0[:, None, None, :], cols.w1[:, None, None, :]
    lines = take_cols(cols.i0) * wx0 + take_cols(cols.i1) * wx1  # [B, C, S, W], scale 2048

    def take_rows(index: torch.Tensor) -> torch.Tensor:
        return lines.gather(2, index[:, None, :, None].expand(batch, channels, height, width)) >> 4

    wy0, wy1 = rows.w0[:, None, :, None], rows.w1[:, None, :, None]
    mixed = ((take_rows(rows.i0) * wy0) >> 16) + ((take_rows(rows.i1) * wy1) >> 16)
    return ((mixed + 2) >> 2).clamp(0, 255).to(torch.uint8)


def resize_bilinear(face: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[3, H, W] uint8 -> [3, height, width] uint8 exactly as `cv2.resize(..., INTER_LINEAR)`."""
    rows = AxisTaps.of(face.shape[1], height, horizontal=False).to(face.device)
    cols = AxisTaps.of(face.shape[2], width, horizontal=True).to(face.device)
    stacked = AxisTaps.stack([rows], height), AxisTaps.stack([cols], width)
    return resize_faces(face[None], *stacked)[0]


def blend_region(
    frame_region: torch.Tensor, face: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """PIL integer blend of `face` over `frame_region` ([..., h, w, 3]) by `mask` ([..., h, w])."""
    m = mask.to(torch.int32)[..., None]
    mixed = frame_region.to(torch.int32) * (255 - m) + face.to(torch.int32) * m
    return div255(mixed).to(torch.uint8)


def scale_mask(mask: torch.Tensor, weight: torch.Tensor | float) -> torch.Tensor:
    """A blend mask faded by a generation weight in 0..1 (silence edges), rounded to levels."""
    return (mask.to(torch.float32) * weight).round().to(torch.uint8)


def paste_faces(
    faces_bgr: torch.Tensor,
    frame_regions: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    boxes: Sequence[PasteBox],
) -> list[torch.Tensor]:
    """Blend each generated face into its frame's visible box region; all on the faces' device.

    `faces_bgr` is [B, 3, 256, 256] uint8; `frame_regions[i]` is the frame's visible box region
    [h, w, 3] uint8 and `masks[i]` the blend mask over the full (unclipped) box [H, W] uint8.
    The per-frame path; `blend_batch` is the same arithmetic for a whole batch at once.
    """
    out = []
    for face, region, mask, box in zip(faces_bgr, frame_regions, masks, boxes, strict=True):
        ox, oy, width, height = box.window
        size = face.shape[1]
        rows = AxisTaps.of(size, box.y2 - box.y1, oy, height, horizontal=False).to(face.device)
        cols = AxisTaps.of(size, box.x2 - box.x1, ox, width, horizontal=True).to(face.device)
        stacked = AxisTaps.stack([rows], height), AxisTaps.stack([cols], width)
        resized = resize_faces(face[None], *stacked)[0].permute(1, 2, 0)
        window = mask[oy : oy + height, ox : ox + width]
        out.append(blend_region(region, resized, window))
    return out


def blend_batch(
    faces_bgr: torch.Tensor,
    regions: torch.Tensor,
    masks: torch.Tensor,
    rows: AxisTaps,
    cols: AxisTaps,
) -> torch.Tensor:
    """`paste_faces` for a whole batch in one pass: [B, 3, S, S] faces, [B, H, W, 3] visible
    regions and [B, H, W] masks padded to the largest box, `[B, H]` / `[B, W]` taps of each
    frame's visible window -> [B, H, W, 3] blended regions (padding is meaningless)."""
    resized = resize_faces(faces_bgr, rows, cols).permute(0, 2, 3, 1)
    return blend_region(regions, resized, masks)
