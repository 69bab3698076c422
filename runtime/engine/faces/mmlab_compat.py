"""Import mmpose 1.2.0 where torchvision and compiled mmcv ops are absent (CPU CI, slim images).

mmpose imports `torchvision.transforms.ToPILImage` (a visualiser) and
`mmcv.ops.MultiScaleDeformableAttention` (the ED-Pose head) at import time; RTMPose inference
calls neither. Only when the real import fails, a stand-in module that raises on use is
registered for the duration of the mmpose import and removed again afterwards, so no other
library ever sees a fake `torchvision` or `mmcv.ops`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

# Every mmpose package that mmengine's registry imports for the `mmpose` scope.
_MMPOSE_PACKAGES = (
    "mmpose.apis",
    "mmpose.codecs",
    "mmpose.datasets",
    "mmpose.engine",
    "mmpose.evaluation",
    "mmpose.models",
    "mmpose.structures",
    "mmpose.visualization",
)


class StandInUsedError(RuntimeError):
    """A code path that needs the real torchvision or compiled mmcv ops was reached."""


def _unavailable(name: str) -> type:
    def refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise StandInUsedError(
            f"{name} is a stand-in registered by {__name__}; install the real package to use it"
        )

    return type(name.rsplit(".", 1)[-1], (), {"__init__": refuse, "__call__": refuse})


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    module.__dict__.update(attributes)
    return module


def _missing(module: str, attribute: str) -> bool:
    try:
        return not hasattr(importlib.import_module(module), attribute)
    except ImportError:
        return True


def _probe_before_standing_in() -> None:
    """transformers asks once whether torchvision exists and caches the answer (`lru_cache`),
    and importing mmpose reaches that probe: it must be asked before a stand-in exists, or it
    keeps a fake yes and later breaks transformers' image models (the engine's Whisper load)."""
    if importlib.util.find_spec("transformers") is not None:
        import_utils = importlib.import_module("transformers.utils.import_utils")
        import_utils.is_torchvision_available()


@contextmanager
def _stand_ins() -> Iterator[list[str]]:
    _probe_before_standing_in()
    registered: dict[str, types.ModuleType] = {}
    if _missing("torchvision.transforms", "ToPILImage"):
        transforms = _module(
            "torchvision.transforms", ToPILImage=_unavailable("torchvision.transforms.ToPILImage")
        )
        registered["torchvision"] = _module("torchvision", transforms=transforms)
        registered["torchvision.transforms"] = transforms
    if _missing("mmcv.ops", "MultiScaleDeformableAttention"):
        registered["mmcv.ops"] = _module(
            "mmcv.ops",
            MultiScaleDeformableAttention=_unavailable("mmcv.ops.MultiScaleDeformableAttention"),
        )
    previous = {name: sys.modules.get(name) for name in registered}
    sys.modules.update(registered)
    try:
        yield sorted(registered)
    finally:
        for name, module in previous.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def import_mmpose() -> list[str]:
    """Import the mmpose packages RTMPose needs; return the names that needed a stand-in."""
    with _stand_ins() as standing_in:
        for package in _MMPOSE_PACKAGES:
            importlib.import_module(package)
    return standing_in
