"""Blend masks for pasting generated faces back: BiSeNet parsing + MuseTalk's mask rules (spec §6).

For each (frame, FaceBox) this computes the expanded square crop box C and the blurred uint8
mask over C, once per avatar frame; pasting (engine-core) is then `out = G*m + F*(1-m)` inside
the box. The parser runs batched; the mask rules are OpenCV/PIL exactly as upstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from PIL import Image

from runtime.engine.cudnn import padded_batch
from runtime.engine.faces.bisenet import BiSeNet
from runtime.engine.faces.boxes import FaceBox
from runtime.engine.faces.precision import resolve_face_dtype
from runtime.engine.hostpool import host_map

PARSER_WEIGHTS = Path("face-parse-bisent/79999_iter.pth")
BACKBONE_WEIGHTS = Path("face-parse-bisent/resnet18-5c106cde.pth")

MaskMode = Literal["jaw", "raw", "neck"]
BlurMode = Literal["offline", "realtime"]

PARSE_SIZE = 512
EXPAND = 1.5
UPPER_BOUNDARY_RATIO = 0.5
CHEEK_WIDTH = 90  # Lw = Rw; both upstream scripts pass 90 (the class default is 80)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
SKIN, NOSE, NECK = 1, 10, 14
MOUTH_AND_LIPS = (11, 12, 13)
_BLUR_FRACTION: dict[BlurMode, float] = {"offline": 0.05, "realtime": 0.1}


@dataclass(frozen=True)
class BlendMask:
    """Crop box C = (xc-s, yc-s, xc+s, yc+s) (may exceed the frame) and its uint8 [2s, 2s] mask."""

    crop_box: tuple[int, int, int, int]
    mask: np.ndarray


def crop_box(box: FaceBox, expand: float = EXPAND) -> tuple[int, int, int, int]:
    """The square around the face box that is parsed and blended (side 2s)."""
    xc, yc = (box.x1 + box.x2) // 2, (box.y1 + box.y2) // 2
    s = int(max(box.x2 - box.x1, box.y2 - box.y1) // 2 * expand)
    if s <= 0:
        raise ValueError(f"face box {box} is too small to blend (needs a side of 2 px or more)")
    return xc - s, yc - s, xc + s, yc + s


def blur_kernel_size(side: int, blur: BlurMode) -> int:
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


def region_mask(classes: np.ndarray, mode: MaskMode) -> np.ndarray:
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
    parsed: np.ndarray, box: FaceBox, crop: tuple[int, int, int, int], blur: BlurMode
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


class FaceParser:
    """BiSeNet parsing of the expanded crop around each face box, turned into blend masks."""

    def __init__(
        self, net: BiSeNet, device: torch.device, dtype: torch.dtype | None = None
    ) -> None:
        """`dtype` of the network (default: `faces.precision`'s for the device). On CUDA
        and in reduced precision it runs channels-last (cuDNN's tensor-core layout, no layout
        conversion around each convolution); fp32 on CPU keeps upstream's."""
        self.dtype = resolve_face_dtype(dtype, device)
        self.net = net.to(device=device, dtype=self.dtype).eval()
        self._memory_format = torch.contiguous_format
        if self.dtype != torch.float32 or device.type == "cuda":
            self._memory_format = torch.channels_last
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.device = device
        self._mean = torch.tensor(_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(_STD, device=device).view(1, 3, 1, 1)

    @classmethod
    def load(
        cls, models_dir: Path, device: torch.device, dtype: torch.dtype | None = None
    ) -> FaceParser:
        dtype = resolve_face_dtype(dtype, device)  # refuse before reading any weights
        net = BiSeNet.load(models_dir / PARSER_WEIGHTS, models_dir / BACKBONE_WEIGHTS)
        return cls(net, device, dtype)

    @torch.inference_mode()
    def parse(self, crops: Sequence[Image.Image], batch_size: int = 8) -> np.ndarray:
        """Class map [N, 512, 512] (argmax over 19) of RGB crops resized with PIL bilinear."""
        out = np.zeros((len(crops), PARSE_SIZE, PARSE_SIZE), dtype=np.uint8)
        for start in range(0, len(crops), batch_size):
            resized = host_map(_to_parse_size, crops[start : start + batch_size])
            pixels = torch.from_numpy(np.stack(resized)).to(self.device)
            classes = self._classes(pixels.permute(0, 3, 1, 2).to(torch.float32))
            out[start : start + len(resized)] = classes.cpu().numpy()
        return out

    @torch.inference_mode()
    def _blend_masks_on_device(
        self,
        frames: torch.Tensor,
        boxes: Sequence[FaceBox],
        crops: list[tuple[int, int, int, int]],
        mode: MaskMode,
        blur: BlurMode,
        batch_size: int,
    ) -> list[BlendMask]:
        from runtime.engine.faces import mask_ops  # it builds on this module's rules

        masks: list[torch.Tensor] = []
        for start in range(0, len(crops), batch_size):
            part = range(start, min(start + batch_size, len(crops)))
            levels = torch.stack(
                [
                    mask_ops.pil_resize(
                        mask_ops.crop_rgb_levels(frames[i], crops[i]),
                        (PARSE_SIZE, PARSE_SIZE),
                        "bilinear",
                    )
                    for i in part
                ]
            )
            classes = self._classes(padded_batch(levels, batch_size))[: len(levels)]
            regions = mask_ops.region_masks(classes, mode)
            for i, region in zip(part, regions, strict=True):
                box = boxes[i]
                masks.append(
                    mask_ops.finish_mask(region, (box.x1, box.y1, box.x2, box.y2), crops[i], blur)
                )
        if not masks:
            return []
        # One copy back for all masks: flattened into one buffer on the device first.
        flat = torch.cat([m.reshape(-1) for m in masks]).cpu().numpy()
        out, at = [], 0
        for crop, mask in zip(crops, masks, strict=True):
            size = mask.numel()
            out.append(BlendMask(crop_box=crop, mask=flat[at : at + size].reshape(mask.shape)))
            at += size
        return out

    def _classes(self, levels: torch.Tensor) -> torch.Tensor:
        """RGB levels [B, 3, 512, 512] float32 on the device -> class map [B, 512, 512] uint8."""
        x = ((levels / 255.0 - self._mean) / self._std).to(self.dtype)
        logits = self.net(x.contiguous(memory_format=self._memory_format))
        return logits.argmax(dim=1).to(torch.uint8)

    def blend_masks(
        self,
        frames_bgr: Sequence[np.ndarray] | torch.Tensor,
        boxes: Sequence[FaceBox],
        *,
        mode: MaskMode = "jaw",
        blur: BlurMode = "realtime",
        batch_size: int = 8,
    ) -> list[BlendMask]:
        """One mask per (frame, box). `frames_bgr`: host frames, or one uint8 [N, H, W, 3]
        tensor on the parser's device, for which the crops, resizes and mask rules run there
        too (`faces.mask_ops`); only the finished masks come back."""
        if len(frames_bgr) != len(boxes):
            raise ValueError(f"{len(frames_bgr)} frames but {len(boxes)} face boxes")
        crops = [crop_box(box) for box in boxes]
        if isinstance(frames_bgr, torch.Tensor):
            return self._blend_masks_on_device(frames_bgr, boxes, crops, mode, blur, batch_size)
        images = host_map(lambda i: crop_rgb(frames_bgr[i], crops[i]), range(len(crops)))
        classes = self.parse(images, batch_size)

        def finish(i: int) -> BlendMask:
            mask = finish_mask(region_mask(classes[i], mode), boxes[i], crops[i], blur)
            return BlendMask(crop_box=crops[i], mask=mask)

        return host_map(finish, range(len(crops)))


def _to_parse_size(crop: Image.Image) -> np.ndarray:
    return np.asarray(crop.resize((PARSE_SIZE, PARSE_SIZE), Image.Resampling.BILINEAR))
