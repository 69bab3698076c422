"""What the preparation benchmark prepares with: random weights, the engine and the face models
per dtype, and the sample video looped to the clip's length."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch

from runtime.engine.avatar_reader import decode_avatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.faces import FaceLocator, FaceParser
from runtime.engine.faces.random_weights import (
    write_random_bisenet,
    write_random_dwpose,
    write_random_s3fd,
)
from runtime.engine.layout import ModelsLayout
from runtime.engine.random_weights import _write_unet, _write_vae, _write_whisper

MEDIA = Path(__file__).resolve().parents[1] / "examples" / "media"


def write_models(root: Path, *, tiny_vae: bool) -> None:
    """VAE (full or tiny) and the full-size face models; tiny UNet and Whisper (not run here)."""
    layout = ModelsLayout(root)
    if layout.vae_dir.is_dir() and layout.s3fd.is_file():
        return
    root.mkdir(parents=True, exist_ok=True)
    _write_unet(layout, tiny=True, seed=0)
    _write_whisper(layout, tiny=True, seed=2)
    _write_vae(layout, tiny=tiny_vae, seed=1)
    write_random_s3fd(layout.s3fd, 3)
    write_random_dwpose(layout.dwpose, 4)
    write_random_bisenet(layout.face_parse_dir, 5)
    layout.write_marker(tiny=tiny_vae, seed=0)


def load_models(
    models: Path, device: torch.device, face_dtypes: Iterable[torch.dtype], *, tiny_vae: bool
) -> tuple[MuseTalkEngine, dict[torch.dtype, tuple[Any, Any]]]:
    """The engine and a (locator, parser) pair per face dtype (fp32 always: the per-frame path's),
    the weights written first if missing."""
    write_models(models, tiny_vae=tiny_vae)
    engine = MuseTalkEngine.load(models, device)
    faces: dict[torch.dtype, tuple[Any, Any]] = {}
    for dtype in {torch.float32, *face_dtypes}:
        faces[dtype] = (
            FaceLocator.load(models, device, dtype),
            FaceParser.load(models, device, dtype),
        )
    say(f"weights written and loaded on {device}")
    return engine, faces


def write_avatar(out: Path, *, frames: int, scale: float) -> Path:
    """The sample video looped (restarting at frame 0) to `frames` frames, H.264 CRF 18."""
    source = decode_avatar(MEDIA / "yongen.mp4", still_fps=25).frames
    if scale != 1.0:
        source = [
            cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in source
        ]
    height, width = source[0].shape[:2]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i in range(frames):
            image = source[i % len(source)][: stream.height, : stream.width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out


def say(message: str) -> None:
    """Progress on stderr, so a run cut short still shows how far it got."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
