"""The engine's own options: how an avatar is prepared and a clip rendered.

Plain frozen dataclasses, so the model can be used and tested without the service's job schema.
The worker translates the job's options into these in one place (its `engine_options`);
the service's API validates its callers' ranges, the engine only what it cannot work with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

# The model this engine runs; the service keys its caches and weights bucket on the same name.
MODEL_VERSION = "musetalk-v1.5"

BlendMode = Literal["jaw", "raw", "neck"]
BLEND_MODES: tuple[str, ...] = get_args(BlendMode)
# The blend mask's Gaussian blur: the offline script's kernel (k = 0.05 x the crop side) or the
# realtime script's (0.1 x: a wider, softer seam).
MaskBlur = Literal["offline", "realtime"]
MASK_BLURS: tuple[str, ...] = get_args(MaskBlur)


def _require_int(name: str, value: object, minimum: int | None = None) -> None:
    if type(value) is not int or (minimum is not None and value < minimum):
        floor = "" if minimum is None else f" of at least {minimum}"
        raise ValueError(f"{name} must be an integer{floor}, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class AvatarOptions:
    """How an avatar is prepared: the face crop (`bbox_shift` moves its top edge, in pixels,
    positive = down; `extra_margin` below the chin), a still image's frame rate, and which part
    of the generated face is blended back (`blend_mode`) under which blend-mask blur
    (`mask_blur`: the official offline script's kernel, or its realtime script's softer one)."""

    bbox_shift: int = 0
    extra_margin: int = 10
    fps: int = 25
    blend_mode: BlendMode = "jaw"
    mask_blur: MaskBlur = "offline"

    def __post_init__(self) -> None:
        _require_int("bbox_shift", self.bbox_shift)
        _require_int("extra_margin", self.extra_margin, 0)
        _require_int("fps", self.fps, 1)
        if self.blend_mode not in BLEND_MODES:
            raise ValueError(f"blend_mode must be one of {BLEND_MODES}, not {self.blend_mode!r}")
        if self.mask_blur not in MASK_BLURS:
            raise ValueError(f"mask_blur must be one of {MASK_BLURS}, not {self.mask_blur!r}")

    def to_json(self) -> dict[str, Any]:
        """The fields in declaration order, as stored in a prepared avatar's header."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AvatarOptions:
        """Options from a header; fields it lacks take their defaults, unknown ones are refused."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown avatar options: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class RenderOptions:
    """Per-render switches: reuse the avatar's own frames where the audio is silent, and the sync
    confidence below which a render is flagged `low_sync`."""

    skip_silence: bool = True
    sync_threshold: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.sync_threshold <= 1.0:
            raise ValueError(f"sync_threshold must be within [0, 1], not {self.sync_threshold!r}")
