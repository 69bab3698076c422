"""Blend masks for pasting generated faces back: BiSeNet parsing + MuseTalk's mask rules (spec §6).

For each (frame, FaceBox) this computes the expanded square crop box C and the blurred uint8
mask over C, once per avatar frame; pasting (engine-core) is then `out = G*m + F*(1-m)` inside
the box. The parser runs batched; the mask rules are `mask_rules` (host) or `mask_ops` (device).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from runtime.engine.cudnn import padded_batch
from runtime.engine.faces.bisenet import BiSeNet
from runtime.engine.faces.boxes import FaceBox
from runtime.engine.faces.mask_ops import (
    crop_rgb_levels,
    pil_resize,
    region_masks,
)
from runtime.engine.faces.mask_ops import finish_mask as finish_mask_on_device
from runtime.engine.faces.mask_rules import (
    PARSE_SIZE,
    crop_box,
    crop_rgb,
    finish_mask,
    region_mask,
)
from runtime.engine.faces.precision import resolve_face_dtype
from runtime.engine.hostpool import host_map
from runtime.engine.options import BlendMode, MaskBlur

PARSER_WEIGHTS = Path("face-parse-bisent/79999_iter.pth")
BACKBONE_WEIGHTS = Path("face-parse-bisent/resnet18-5c106cde.pth")

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BlendMask:
    """Crop box C = (xc-s, yc-s, xc+s, yc+s) (may exceed the frame) and its uint8 [2s, 2s] mask."""

    crop_box: tuple[int, int, int, int]
    mask: np.ndarray


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
        mode: BlendMode,
        blur: MaskBlur,
        batch_size: int,
    ) -> list[BlendMask]:
        masks: list[torch.Tensor] = []
        for start in range(0, len(crops), batch_size):
            part = range(start, min(start + batch_size, len(crops)))
            levels = torch.stack(
                [
                    pil_resize(
                        crop_rgb_levels(frames[i], crops[i]),
                        (PARSE_SIZE, PARSE_SIZE),
                        "bilinear",
                    )
                    for i in part
                ]
            )
            classes = self._classes(padded_batch(levels, batch_size))[: len(levels)]
            regions = region_masks(classes, mode)
            for i, region in zip(part, regions, strict=True):
                box = boxes[i]
                masks.append(
                    finish_mask_on_device(region, (box.x1, box.y1, box.x2, box.y2), crops[i], blur)
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
        mode: BlendMode = "jaw",
        blur: MaskBlur = "realtime",
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
