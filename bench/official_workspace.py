"""The official MuseTalk package made importable here: shims for packages this environment
lacks, mmpose's model builder without the mmdet scope, and a temporary workspace laid out as
the official scripts expect (their paths are cwd-relative). Used by `official_compare.py`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.engine.audio import load_audio_16k
from runtime.engine.faces.mmlab_compat import import_mmpose
from runtime.engine.layout import ModelsLayout


def _module(name: str, **attributes: Any) -> types.ModuleType:
    import importlib.machinery

    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    module.__dict__.update(attributes)
    return module


def _shim_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for packages the official modules import but this environment lacks."""

    class ToTensor:
        def __call__(self, image: Any) -> torch.Tensor:
            array = np.asarray(image, dtype=np.uint8)
            return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0

    class Normalize:
        def __init__(self, mean: Any, std: Any) -> None:
            self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
            self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return (x - self.mean) / self.std

    class Compose:
        def __init__(self, steps: list[Callable[[Any], Any]]) -> None:
            self.steps = steps

        def __call__(self, x: Any) -> Any:
            for step in self.steps:
                x = step(x)
            return x

    def rearrange(x: torch.Tensor, pattern: str) -> torch.Tensor:
        if pattern != "b c h w -> b (c h) w":
            raise NotImplementedError(pattern)
        return x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3])

    def load(path: str, sr: int) -> tuple[np.ndarray, int]:
        if sr != 16000:
            raise NotImplementedError(sr)
        return load_audio_16k(Path(path)), sr

    transforms = _module(
        "torchvision.transforms", ToTensor=ToTensor, Normalize=Normalize, Compose=Compose
    )
    return {
        "omegaconf": _module("omegaconf", OmegaConf=None),
        "torchvision": _module("torchvision", transforms=transforms),
        "torchvision.transforms": transforms,
        "einops": _module("einops", rearrange=rearrange),
        "librosa": _module("librosa", load=load),
    }


@contextlib.contextmanager
def official_imports() -> Iterator[None]:
    """Shims registered only while the official modules import (and only for packages that are
    missing), then removed, so transformers and mmpose never see them."""
    import importlib.util

    shims = _shim_modules()
    missing = {
        name.split(".")[0]
        for name in shims
        if name.split(".")[0] not in sys.modules
        and importlib.util.find_spec(name.split(".")[0]) is None
    }
    added = [name for name in shims if name.split(".")[0] in missing]
    sys.modules.update({name: shims[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _wrap_init_model() -> None:
    """mmpose's init_model without the config's mmdet backbone scope (see the module doc)."""
    import_mmpose()  # our torchvision / mmcv.ops stand-ins for mmpose's own imports
    from mmengine.config import Config
    from mmpose import apis

    real_init_model = apis.init_model

    def init_model(config: Any, checkpoint: Any = None, device: Any = "cpu", **kw: Any) -> Any:
        cfg = Config.fromfile(config) if isinstance(config, str) else config
        cfg.model.backbone.pop("_scope_", None)
        return real_init_model(cfg, checkpoint, device=str(device), **kw)

    apis.init_model = init_model


@contextlib.contextmanager
def official_workspace(official: Path, models: Path) -> Iterator[Path]:
    """A temporary copy of the official package, cwd set there (its paths are cwd-relative)."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="musetalk-official-") as tmp:
        root = Path(tmp)
        shutil.copytree(official / "musetalk", root / "musetalk")
        shutil.copytree(official / "scripts", root / "scripts")
        (root / "models").symlink_to(models.resolve())
        sfd = root / "musetalk" / "utils" / "face_detection" / "detection" / "sfd"
        shutil.copy(ModelsLayout(models).s3fd, sfd / "s3fd.pth")
        sys.path[:0] = [str(root), str(root / "musetalk" / "utils")]
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(previous)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The official code prints progress bars and banners; keep the table readable."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
