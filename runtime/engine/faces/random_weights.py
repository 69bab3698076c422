"""Seeded random weights in the official file formats, for `make-weights` and the tests.

The architectures are fixed (no config in the official layout), so these are always full size.
Random S3FD box-regression heads are zero so that random detections are the anchors themselves:
boxes then lie on the frame and the pipeline runs end to end; every other tensor is PyTorch's
default initialisation under the seed. See docs/faces.md ("Random weights").
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from runtime.engine.faces.bisenet import BiSeNet, ResNet18
from runtime.engine.faces.parsing import BACKBONE_WEIGHTS, PARSER_WEIGHTS
from runtime.engine.faces.s3fd import S3FDNet
from runtime.fileio import atomic_path

_IMAGENET_CLASSES = 1000


def write_random_s3fd(path: Path, seed: int) -> None:
    """`s3fd-619a316812.pth`: a plain state dict."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = S3FDNet()
    for name, module in net.named_modules():
        if name.endswith("_mbox_loc") and isinstance(module, nn.Conv2d):
            nn.init.zeros_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    _save(net.state_dict(), path)


def write_random_dwpose(path: Path, seed: int) -> None:
    """`dw-ll_ucoco_384.pth`: an mmengine checkpoint (`state_dict` + `meta`)."""
    from runtime.engine.faces.dwpose import build_model

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(torch.device("cpu"))
    _save({"state_dict": model.state_dict(), "meta": {}}, path)


def write_random_bisenet(directory: Path, seed: int) -> None:
    """`79999_iter.pth` (parser state dict) and `resnet18-5c106cde.pth` (torchvision layout).

    `directory` is the folder holding both (`<models>/face-parse-bisent`).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        backbone = ResNet18().state_dict()
        classifier = nn.Linear(512, _IMAGENET_CLASSES)
        parser = BiSeNet().state_dict()
    backbone |= {"fc.weight": classifier.weight.detach(), "fc.bias": classifier.bias.detach()}
    _save(backbone, directory / BACKBONE_WEIGHTS.name)
    _save(parser, directory / PARSER_WEIGHTS.name)


def _save(obj: object, path: Path) -> None:
    with atomic_path(path) as temporary:
        torch.save(obj, temporary)
