"""The AOT packages against the eager models in one process (`bench/coldstart.py --compare`):
ms/frame of the UNet and the decoder with and without CUDA graphs around the packages, and how
far the packages' outputs are from eager's. torch is imported only when it runs."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPARE_VARIANTS = {
    "no_graphs": (),
    "unet_graph": ("unet",),
    "both_graphs": ("unet", "vae_decoder"),
}


def compare_with_eager(
    models: Path,
    device_name: str,
    cache_dir: Path,
    variants: Sequence[str] = tuple(COMPARE_VARIANTS),
    *,
    iterations: int = 20,
) -> dict[str, Any]:
    """The AOT packages against the eager models in this process: ms/frame of the UNet and the
    decoder (with and without CUDA graphs around the packages), PSNR of the decoded faces and
    the Whisper features' largest difference. The packages must be built already."""
    import numpy as np
    import torch

    from runtime.engine import aot, aot_load
    from runtime.engine.audio import AudioEncoder
    from runtime.engine.batch_sizes import static_batch_size
    from runtime.engine.latents import Generator, LatentCodec
    from runtime.engine.layout import ModelsLayout
    from runtime.engine.weight_cache import WeightCache

    device = torch.device(device_name)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    layout = ModelsLayout(models)
    batch = static_batch_size(device, dtype)
    directory = aot.find_packages(cache_dir, aot.AotKey.for_models(layout, device, dtype, batch))
    if directory is None:
        raise RuntimeError(f"no AOT packages in {cache_dir} for this card and weights")
    cache = WeightCache(cache_dir)
    generator = Generator(layout.unet_config, layout.unet_weights, device, dtype, cache=cache)
    codec = LatentCodec(layout.vae_dir, device, dtype, cache=cache)
    audio_encoder = AudioEncoder(layout.whisper_dir, device, dtype, cache=cache)
    seed = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 8, 32, 32, generator=seed).to(device, dtype)
    audio = torch.randn(batch, 50, 384, generator=seed).to(device, dtype)
    speech = np.random.default_rng(0).standard_normal(16000 * 40).astype(np.float32) * 0.1
    eager = _Eager(latents, audio, speech, predicted=None, faces=None, features=None)
    report: dict[str, Any] = {"batch": batch, "device": device_name}
    with torch.inference_mode():
        eager.predicted = generator.step(latents, audio)
        eager.faces = codec.decode(eager.predicted)
        eager.features = audio_encoder.features(speech)
        report["eager"] = {
            "unet_ms_per_frame": _per_frame_ms(
                lambda: generator.step(latents, audio), device, iterations, batch
            ),
            "decoder_ms_per_frame": _per_frame_ms(
                lambda: codec.decode(eager.predicted), device, iterations, batch
            ),
        }
        print(json.dumps({"eager": report["eager"]}), flush=True)
        for name in variants:
            start = time.perf_counter()
            packaged = aot_load.load_models(
                directory,
                device,
                dtype,
                batch,
                eager_codec=lambda: codec,
                cuda_graphs=COMPARE_VARIANTS[name],
            )
            report[name] = {
                "load_s": round(time.perf_counter() - start, 2),
                **_package_figures(packaged, eager, device, iterations, batch),
            }
            print(json.dumps({name: report[name]}), flush=True)
            del packaged
            if device.type == "cuda":
                torch.cuda.empty_cache()
    manifest = json.loads((directory / aot.MANIFEST).read_text())
    report["build_s"] = manifest["build_s"]
    report["package_bytes"] = manifest["files"]
    return report


@dataclass
class _Eager:
    """The inputs and the eager models' outputs every package is compared with."""

    latents: Any
    audio: Any
    speech: Any
    predicted: Any
    faces: Any
    features: Any


def _package_figures(
    packaged: Any, eager: _Eager, device: Any, iterations: int, batch: int
) -> dict[str, Any]:
    """One variant's packages: load ms, ms/frame, and how far their outputs are from eager's."""
    step, decode = packaged.generator.step, packaged.codec.decode
    aot_predicted = step(eager.latents, eager.audio).clone()
    aot_faces = decode(eager.predicted).clone()
    aot_features = packaged.audio_encoder.features(eager.speech)
    return {
        "load_ms": {k: round(v, 1) for k, v in packaged.load_ms.items()},
        "unet_ms_per_frame": _per_frame_ms(
            lambda: step(eager.latents, eager.audio), device, iterations, batch
        ),
        "decoder_ms_per_frame": _per_frame_ms(
            lambda: decode(eager.predicted), device, iterations, batch
        ),
        "unet_latent_max_abs_diff": float((aot_predicted - eager.predicted).abs().max()),
        "faces_psnr_db_decoder_only": _faces_psnr(aot_faces, eager.faces),
        "faces_psnr_db_unet_and_decoder": _faces_psnr(decode(aot_predicted), eager.faces),
        "whisper_features_max_abs_diff": float((aot_features - eager.features).abs().max()),
    }


def _per_frame_ms(run: Any, device: Any, iterations: int, batch: int) -> float:
    """Milliseconds per frame of `run` (one batch), over `iterations` after one warm-up."""
    import torch

    run()
    synchronize(torch, device)
    start = time.perf_counter()
    for _ in range(iterations):
        run()
    synchronize(torch, device)
    return round((time.perf_counter() - start) / iterations / batch * 1000, 4)


def _faces_psnr(a: Any, b: Any) -> float:
    """PSNR (dB) of two batches of decoded faces (0..255)."""
    import numpy as np

    mse = float(((a.float() - b.float()) ** 2).mean())
    return round(10 * np.log10(255**2 / mse), 2) if mse > 0 else float("inf")


def synchronize(torch: Any, device: Any) -> None:
    """Waits for the device's queued work (CUDA only), so a clock read counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
