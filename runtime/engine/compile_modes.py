"""torch.compile modes of the UNet and the VAE decoder, and compiling them in place."""

from __future__ import annotations

import torch

from runtime.engine.latents import Generator, LatentCodec

# torch.compile mode of `compile_models`: CUDA graphs on top of Inductor, which at batch 64
# take the UNet step about a third faster than Inductor's default mode (launch overhead).
DEFAULT_COMPILE_MODE = "reduce-overhead"
COMPILE_MODES = frozenset(
    {"default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"}
)
CUDA_GRAPH_MODES = frozenset({"reduce-overhead", "max-autotune"})


def split_compile_mode(mode: str | None) -> tuple[str | None, str | None]:
    """`compile_mode` -> (UNet mode, VAE decoder mode). One torch.compile mode applies to
    both; "UNET/DECODER" gives each its own (e.g. "reduce-overhead/max-autotune"). "default"
    and None are torch's default mode."""
    parts = (mode or "default").split("/")
    if len(parts) > 2 or not all(part in COMPILE_MODES for part in parts):
        raise ValueError(
            f"compile mode {mode!r}: expected one of {sorted(COMPILE_MODES)} or UNET/DECODER"
        )
    unet, decoder = parts[0], parts[-1]
    return (None if unet == "default" else unet, None if decoder == "default" else decoder)


def compile_for_speed(generator: Generator, codec: LatentCodec, *, mode: str | None = None) -> None:
    """`torch.compile` the UNet and the VAE decoder in place (the two per-frame models), each
    in its mode of `split_compile_mode(mode)`.

    About 1.5x faster per frame than eager, at 54 dB PSNR against it. Their upsamplers come
    folded (see `LatentCodec`), which the compiled decoder runs about 10% faster.
    """
    unet_mode, decoder_mode = split_compile_mode(mode)
    generator.unet = torch.compile(generator.unet, dynamic=False, mode=unet_mode)
    codec.vae.decoder = torch.compile(codec.vae.decoder, dynamic=False, mode=decoder_mode)
