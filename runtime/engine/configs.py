"""Constructor configs of the official models (spec §1), full size and tiny.

Kept free of engine imports so tools (the GPU benchmark) can build the models from them alone.
"""

from __future__ import annotations

from typing import Any

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
    "decoder_start_token_id": 1,  # nosec B105 (a token id)
    "pad_token_id": 0,  # nosec B105 (a token id)
    "bos_token_id": 1,  # nosec B105 (a token id)
    "eos_token_id": 2,  # nosec B105 (a token id)
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
}


def unet_config(*, tiny: bool) -> dict[str, Any]:
    return {**UNET_CONFIG, **(TINY_UNET_OVERRIDES if tiny else {})}
