"""`make-weights`: random-initialized weights in exactly the official layout and file formats.

Full size serves GPU benchmarks (same shapes and cost as the real models); `tiny` keeps the
same classes with small configs for CPU tests. Architectures without a config file in the
official layout (S3FD, DWPose, BiSeNet) are always full size; the faces package writes those.
Every directory written here carries a `weights.json` marker, so the engine can say plainly that
its output comes from random weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from runtime.engine.configs import (
    TINY_VAE_OVERRIDES,
    TINY_WHISPER_OVERRIDES,
    VAE_CONFIG,
    WHISPER_CONFIG,
    unet_config,
)
from runtime.engine.layout import ModelsLayout

log = logging.getLogger(__name__)


def make_weights(root: Path, *, tiny: bool, seed: int = 0) -> ModelsLayout:
    """Write a complete random models directory at `root` and mark it random."""
    layout = ModelsLayout(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_unet(layout, tiny=tiny, seed=seed)
    _write_vae(layout, tiny=tiny, seed=seed + 1)
    _write_whisper(layout, tiny=tiny, seed=seed + 2)
    _write_face_models(layout, tiny=tiny, seed=seed + 3)
    layout.write_marker(tiny=tiny, seed=seed)
    return layout


def _write_unet(layout: ModelsLayout, *, tiny: bool, seed: int) -> None:
    from diffusers import UNet2DConditionModel

    config = unet_config(tiny=tiny)
    torch.manual_seed(seed)
    unet: Any = UNet2DConditionModel(**{k: v for k, v in config.items() if not k.startswith("_")})
    layout.unet_weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(unet.state_dict(), layout.unet_weights)
    layout.unet_config.write_text(json.dumps(config, indent=2) + "\n")


def _write_vae(layout: ModelsLayout, *, tiny: bool, seed: int) -> None:
    from diffusers import AutoencoderKL

    config = {**VAE_CONFIG, **(TINY_VAE_OVERRIDES if tiny else {})}
    torch.manual_seed(seed)
    vae: Any = AutoencoderKL(**config)
    layout.vae_dir.mkdir(parents=True, exist_ok=True)
    # The official checkpoint is a .bin (torch pickle of tensors), not safetensors.
    vae.save_pretrained(layout.vae_dir, safe_serialization=False)


def _write_whisper(layout: ModelsLayout, *, tiny: bool, seed: int) -> None:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    config = WhisperConfig(**{**WHISPER_CONFIG, **(TINY_WHISPER_OVERRIDES if tiny else {})})
    torch.manual_seed(seed)
    model = WhisperModel(config)
    layout.whisper_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(layout.whisper_dir)
    torch.save(model.state_dict(), layout.whisper_dir / "pytorch_model.bin")
    WhisperFeatureExtractor(
        feature_size=80,
        sampling_rate=16000,
        hop_length=160,
        chunk_length=30,
        n_fft=400,
        padding_value=0.0,
    ).save_pretrained(layout.whisper_dir)


def _write_face_models(layout: ModelsLayout, *, tiny: bool, seed: int) -> None:
    """S3FD, DWPose, BiSeNet and SyncNet come from the faces and sync packages."""
    try:
        from runtime.engine.faces import random_weights as face_weights
        from runtime.engine.sync import random_weights as sync_weights
    except ImportError as error:  # the faces/sync packages are built on a parallel branch
        log.warning("face and sync weights not written: %s", error)
        return
    layout.s3fd.parent.mkdir(parents=True, exist_ok=True)
    face_weights.write_random_s3fd(layout.s3fd, seed)
    layout.dwpose.parent.mkdir(parents=True, exist_ok=True)
    face_weights.write_random_dwpose(layout.dwpose, seed + 1)
    layout.face_parse_dir.mkdir(parents=True, exist_ok=True)
    face_weights.write_random_bisenet(layout.face_parse_dir, seed + 2)
    layout.syncnet.parent.mkdir(parents=True, exist_ok=True)
    sync_weights.write_random_syncnet(layout.syncnet, seed + 3, tiny)
