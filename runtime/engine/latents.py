"""VAE latents in and out, and the single UNet step (spec §4-5).

`LatentCodec.encode_crops` builds the 8-channel latent per 256x256 crop: the crop with its lower
half set to -1 (channels 0-3), then the crop itself as reference (channels 4-7), both scaled by
0.18215. Deviation, on purpose: we take the posterior MEAN, not a sample. Upstream inference
samples unseeded noise (non-deterministic); training used the mean, and a prepared avatar must be
the same every time it is rebuilt. `Generator.step` is the UNet at t=0; it predicts the clean
latent directly (no scheduler, no noise).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.engine.cudnn import cudnn_benchmark
from runtime.engine.upsample import fold_upsamplers
from runtime.engine.weight_cache import WeightCache, load_module

SCALING_FACTOR = 0.18215  # sd-vae-ft-mse has no scaling_factor key: the diffusers default
CROP_SIZE = 256
LATENT_SIZE = 32


class LatentCodec:
    """AutoencoderKL (sd-vae-ft-mse) used as the spec uses it.

    The decoder's upsamplers are folded (`upsample.fold_upsamplers`: the same function in fewer
    operations; decode 2.74 -> 2.52 ms/frame eager on an H100) unless `fold_upsampling` is off
    (the benchmark's plain baseline keeps diffusers' modules as they are).
    """

    def __init__(
        self,
        vae_dir: Path,
        device: torch.device,
        dtype: torch.dtype,
        *,
        cache: WeightCache | None = None,
        fold_upsampling: bool = True,
    ) -> None:
        from diffusers import AutoencoderKL

        # The official checkpoint is a .bin; ask for safetensors only where a copy has them.
        has_safetensors = (vae_dir / "diffusion_pytorch_model.safetensors").is_file()
        weights = vae_dir / (
            "diffusion_pytorch_model.safetensors"
            if has_safetensors
            else "diffusion_pytorch_model.bin"
        )

        def build() -> torch.nn.Module:
            module: torch.nn.Module = AutoencoderKL.from_config(AutoencoderKL.load_config(vae_dir))
            return module

        def from_sources() -> torch.nn.Module:
            vae = AutoencoderKL.from_pretrained(vae_dir, use_safetensors=has_safetensors)
            module: torch.nn.Module = vae.to(device=device, dtype=dtype)
            return module

        self.vae: Any = load_module(
            cache,
            "vae",
            [vae_dir / "config.json", weights],
            build_empty=build,
            load_from_sources=from_sources,
            device=device,
            dtype=dtype,
        )
        if fold_upsampling:
            fold_upsamplers(self.vae.get_submodule("decoder"))
        self.device = device
        self.dtype = dtype
        self.scaling_factor = float(getattr(self.vae.config, "scaling_factor", SCALING_FACTOR))
        # How `encode_crops` runs the encoder; see `tune_encoder`.
        self.encoder_channels_last = False
        self.encode_batch: int | None = None
        self._moments: Callable[[torch.Tensor], torch.Tensor] = self._encoder_moments

    def tune_encoder(
        self,
        *,
        channels_last: bool,
        batch: int | None,
        compile_mode: str | None = None,
        compile_backend: str | None = None,
    ) -> None:
        """How `encode_crops` runs the encoder (preparation's VAE work on a GPU).

        `channels_last`: the encoder's weights and input in cuDNN's tensor-core layout, on
        CUDA only (on CPU it costs GroupNorm precision, see `_encode_pixels`).
        `batch`: crops go through in batches of exactly this many (the last one padded), so the
        shapes are fixed: cuDNN's autotuner is on for them, and a compiled encoder has one graph.
        `compile_backend` (with `batch`): the encoder through `torch.compile` in `compile_mode`.
        The decoder is untouched. Off again with `channels_last=False, batch=None`.
        On an H100 (bench/results/2026-11-26-h100-prepare-fast.md) channels-last fixed batches
        were slower eager (4.1 against 3.6 ms/frame) and 1.6 ms/frame compiled: only
        `MuseTalkEngine.compile_preparation` uses this.
        """
        if compile_backend is not None and batch is None:
            raise ValueError("a compiled encoder needs a fixed batch")
        channels_last = channels_last and self.device.type == "cuda"
        layout = torch.channels_last if channels_last else torch.contiguous_format
        for module in (self.vae.encoder, self.vae.quant_conv):
            if module is not None:
                module.to(memory_format=layout)
        self.encoder_channels_last = channels_last
        self.encode_batch = batch
        self._moments = self._encoder_moments
        if compile_backend is not None:
            self._moments = torch.compile(
                self._encoder_moments, dynamic=False, mode=compile_mode, backend=compile_backend
            )

    def use_packaged_encoder(self, run: Callable[[torch.Tensor], torch.Tensor], batch: int) -> None:
        """The encoder from an AOT package (`aot_prepare`) built for `batch` frames' crops
        (2 x batch images, contiguous): fixed batches, the last padded."""
        self.tune_encoder(channels_last=False, batch=batch)
        self._moments = run

    def _encoder_moments(self, images: torch.Tensor) -> torch.Tensor:
        """`AutoencoderKL.encode`'s posterior parameters ([B, 8, 32, 32]: mean, then log-variance)
        without its wrappers (hooks, slicing, tiling: none applies at 256x256)."""
        moments: torch.Tensor = self.vae.encoder(images)
        if self.vae.quant_conv is not None:
            moments = self.vae.quant_conv(moments)
        return moments

    @torch.inference_mode()
    def encode_crops(self, crops_bgr: np.ndarray) -> torch.Tensor:
        """[B, 256, 256, 3] uint8 BGR crops -> [B, 8, 32, 32] (masked, reference) latents."""
        # uint8 to the device, then converted there: a quarter of the bytes to copy, and the
        # same fp32 arithmetic as on the host, so the same pixels.
        pixels = crops_to_pixels(torch.from_numpy(crops_bgr).to(self.device))  # fp32, [-1, 1]
        step = self.encode_batch or max(1, len(pixels))
        parts = [
            self._encode_pixels(pixels[i : i + step], step) for i in range(0, len(pixels), step)
        ]
        return torch.cat(parts) if parts else pixels.new_zeros((0, 8, LATENT_SIZE, LATENT_SIZE))

    def _encode_pixels(self, pixels: torch.Tensor, batch: int) -> torch.Tensor:
        count = len(pixels)
        if self.encode_batch is not None and count < batch:  # a fixed shape: pad the last batch
            pixels = torch.cat([pixels, pixels.new_zeros((batch - count, *pixels.shape[1:]))])
        masked = mask_lower_half(pixels)
        # The crops come NHWC in memory, so the images are channels-last already unless padded.
        both = torch.cat([masked, pixels]).to(dtype=self.dtype)
        if self.encoder_channels_last:
            both = both.contiguous(memory_format=torch.channels_last)
        elif self.device.type != "cuda":
            # Torch's CPU GroupNorm loses precision on channels-last input when a group holds
            # few channels: the tiny VAE's latents of a face were 2e-4 off an fp64 reference
            # (4e-7 contiguous). On CUDA the layout measured equal.
            both = both.contiguous()
        with cudnn_benchmark(self.encode_batch is not None and self.device.type == "cuda"):
            moments = self._moments(both)
        mean = moments[:, :4] * self.scaling_factor  # DiagonalGaussianDistribution's mean
        masked_latent, reference_latent = mean.chunk(2)
        return torch.cat([masked_latent[:count], reference_latent[:count]], dim=1)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Predicted latents [B, 4, 32, 32] -> uint8 RGB faces [B, 3, 256, 256] on the device."""
        # Multiplied by the reciprocal, as upstream's decode_latents: dividing rounds differently
        # in the last bit, enough to move some decoded pixels by one level.
        images = self.vae.decode(latents.to(self.dtype) * (1 / self.scaling_factor)).sample
        return images_to_uint8(images)


def crops_to_pixels(crops_bgr: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Spec §4.1 and §4.3: BGR uint8 NHWC -> RGB float32 NCHW in [-1, 1], where the input is."""
    bgr = torch.from_numpy(crops_bgr) if isinstance(crops_bgr, np.ndarray) else crops_bgr
    pixels = bgr.flip(-1).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    return (pixels - 0.5) / 0.5


def mask_lower_half(pixels: torch.Tensor) -> torch.Tensor:
    """Spec §4.2: rows 128..255 become exactly -1 (zero before normalization)."""
    masked = pixels.clone()
    masked[:, :, pixels.shape[2] // 2 :, :] = -1.0
    return masked


def images_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Spec §5 decode: clamp(x/2 + 0.5), fp32, x255, round -> uint8 (channels stay RGB)."""
    scaled = (images.float() / 2 + 0.5).clamp(0, 1)
    return (scaled * 255).round().to(torch.uint8)


class Generator:
    """The v1.5 UNet (`UNet2DConditionModel(**musetalk.json)`, strict state_dict load), its
    upsamplers folded as the decoder's are (see `LatentCodec`)."""

    def __init__(
        self,
        config_path: Path,
        weights_path: Path,
        device: torch.device,
        dtype: torch.dtype,
        *,
        cache: WeightCache | None = None,
        fold_upsampling: bool = True,
    ) -> None:
        from diffusers import UNet2DConditionModel

        config: dict[str, Any] = json.loads(config_path.read_text())

        def build() -> torch.nn.Module:
            module: Any = UNet2DConditionModel(
                **{k: v for k, v in config.items() if not k.startswith("_")}
            )
            return module

        def from_sources() -> torch.nn.Module:
            # Built empty and assigned the loaded tensors: no random init of 800M parameters.
            with torch.device("meta"):
                unet = build()
            unet.load_state_dict(_load_pickled_state(weights_path), strict=True, assign=True)
            return unet.to(device=device, dtype=dtype)

        self.unet: Any = load_module(
            cache,
            "unet",
            [config_path, weights_path],
            build_empty=build,
            load_from_sources=from_sources,
            device=device,
            dtype=dtype,
        )
        if fold_upsampling:
            fold_upsamplers(self.unet)
        self.device = device
        self.dtype = dtype

    @torch.inference_mode()
    def step(self, latents: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        """[B, 8, 32, 32] latents + [B, 50, 384] PE'd audio -> [B, 4, 32, 32] predicted latents.

        The timestep is 0 for every call; its embedding is two small Linear layers, so we let
        diffusers compute it rather than patch the UNet: it is negligible next to the blocks.
        """
        sample = latents.to(device=self.device, dtype=self.dtype)
        context = audio_tokens.to(device=self.device, dtype=self.dtype)
        timestep = torch.zeros(sample.shape[0], dtype=torch.long, device=self.device)
        return self.unet(sample, timestep, encoder_hidden_states=context).sample


def _load_pickled_state(path: Path) -> dict[str, torch.Tensor]:
    """The official `.pth` state dict, memory-mapped where its format allows (no full read)."""
    try:
        state: dict[str, torch.Tensor] = torch.load(
            path, map_location="cpu", weights_only=True, mmap=True
        )
    except RuntimeError:  # a legacy (non-zip) torch.save file cannot be memory-mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    return state
