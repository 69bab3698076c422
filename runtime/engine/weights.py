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

from runtime.engine.layout import ModelsLayout

log = logging.getLogger(__name__)

# Spec §1: the v1.5 UNet constructor kwargs, as in the official musetalk.json.
UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0.dev0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}
TINY_UNET_OVERRIDES: dict[str, Any] = {
    "block_out_channels": [32, 64, 64, 64],
    "layers_per_block": 1,
}

# Spec §1: stabilityai/sd-vae-ft-mse.
VAE_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 256,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
# Four blocks keep the 8x downsampling (256 -> 32), which the UNet's 32x32 latent needs.
TINY_VAE_OVERRIDES: dict[str, Any] = {
    "block_out_channels": [8, 8, 16, 16],
    "layers_per_block": 1,
    "norm_num_groups": 4,
}

# Spec §1: openai/whisper-tiny. The UNet cross-attends to 384-d tokens built from 5 hidden states,
# so even the tiny variant keeps d_model 384 and 4 encoder layers.
WHISPER_CONFIG: dict[str, Any] = {
    "d_model": 384,
    "encoder_layers": 4,
    "encoder_attention_heads": 6,
    "encoder_ffn_dim": 1536,
    "decoder_layers": 4,
    "decoder_attention_heads": 6,
    "decoder_ffn_dim": 1536,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "vocab_size": 51865,
}
TINY_WHISPER_OVERRIDES: dict[str, Any] = {
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 128,
    "decoder_layers": 1,
    "decoder_attention_heads": 2,
    "decoder_ffn_dim": 64,
    "max_target_positions": 16,
    "vocab_size": 64,
    "decoder_start_token_id": 1,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
}


def unet_config(*, tiny: bool) -> dict[str, Any]:
    return {**UNET_CONFIG, **(TINY_UNET_OVERRIDES if tiny else {})}


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
        from runtime.engine.faces import weights as face_weights
        from runtime.engine.sync import weights as sync_weights
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
