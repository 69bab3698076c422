"""Stand-ins for the faces package (built on a parallel branch), injected into the engine.

They follow the faces interface exactly: `locate` returns a box per frame (None = no face) and
`blend_masks` returns the spec's crop box C with a mask over it, so the engine code under test is
the same code that runs with the real detectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Mask:
    crop_box: tuple[int, int, int, int]
    mask: np.ndarray


class CentreLocator:
    """A box over the frame's centre (half the width, a third of the height), with the margin.

    `faceless` lists frame indices reported as having no face.
    """

    def __init__(self, faceless: Sequence[int] = ()) -> None:
        self.faceless = set(faceless)
        self.calls: list[dict[str, int]] = []

    def locate(
        self,
        frames_bgr: Sequence[np.ndarray],
        *,
        bbox_shift: int,
        extra_margin: int,
        batch_size: int = 8,
    ) -> list[Box | None]:
        self.calls.append({"bbox_shift": bbox_shift, "extra_margin": extra_margin})
        boxes: list[Box | None] = []
        for index, frame in enumerate(frames_bgr):
            height, width = frame.shape[:2]
            if index in self.faceless:
                boxes.append(None)
                continue
            y2 = min(height * 2 // 3 + extra_margin, height)
            boxes.append(Box(width // 4, height // 3 + bbox_shift, width * 3 // 4, y2))
        return boxes


def spec_crop_box(box: Box) -> tuple[int, int, int, int]:
    """Spec §6: the square crop box C around the paste box (expand 1.5)."""
    xc, yc = (box.x1 + box.x2) // 2, (box.y1 + box.y2) // 2
    s = int((max(box.x2 - box.x1, box.y2 - box.y1) // 2) * 1.5)
    return (xc - s, yc - s, xc + s, yc + s)


class LowerHalfParser:
    """255 on the lower half of the paste box (as the spec's upper-boundary rule leaves it)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    def blend_masks(
        self,
        frames_bgr: Sequence[np.ndarray],
        boxes: Sequence[Box],
        *,
        mode: str = "jaw",
        blur: str = "realtime",
        batch_size: int = 8,
    ) -> list[Mask]:
        self.calls.append({"mode": mode, "blur": blur})
        masks = []
        for box in boxes:
            crop = spec_crop_box(box)
            side = crop[2] - crop[0]
            mask = np.zeros((side, side), dtype=np.uint8)
            s = side // 2
            mask[s:, box.x1 - crop[0] : box.x2 - crop[0]] = 255
            mask[box.y2 - crop[1] :, :] = 0
            masks.append(Mask(crop, mask))
        return masks
