"""The speak benchmark's model probes (no mp4): GPU memory per batch, candidate optimizations,
decoder compile modes, the GPU loop alone and the PSNR of reduced precision against fp32."""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.speak_report import rounded
from bench.speak_setup import synchronize
from runtime.engine.audio import load_audio_16k
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.batch_sizes import batch_size_for_memory
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.latents import Generator, LatentCodec
from runtime.engine.layout import ModelsLayout

CARD_24GB = 24 * 1024**3


def gpu_probes(
    args: argparse.Namespace,
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    batch: int,
    report: dict[str, Any],
) -> None:
    """The GPU-only sections of the report: decoder compile modes and model variants (when
    asked), memory per batch and the batch that fits a 24 GB card."""
    if args.decoder_modes:
        report["decoder_compile_modes"] = decoder_compile_modes(
            engine, args.models, avatar, batch, args.decoder_modes.split(",")
        )
    if args.variants:
        report["model_variants"] = model_variants(engine, avatar, batch)
    table = memory_per_batch(engine, avatar, [int(b) for b in args.memory_batches.split(",")])
    report["memory_per_batch"] = table
    weights_bytes = report["weights_gpu_mb"] * 1e6
    fits = [
        row["batch"]
        for row in table
        if not row.get("oom") and weights_bytes + row["peak_mb"] * 1e6 <= CARD_24GB - 1024**3
    ]
    report["batch_for_24gb"] = {
        "engine_pick": batch_size_for_memory(int(CARD_24GB - weights_bytes), engine.dtype),
        "largest_measured_that_fits": max(fits) if fits else None,
    }


def memory_per_batch(
    engine: MuseTalkEngine, avatar: PreparedAvatar, batch_sizes: Sequence[int]
) -> list[dict[str, Any]]:
    """Peak allocated GPU memory of UNet + decode per batch size, and ms per frame of each."""
    device = engine.device
    rows: list[dict[str, Any]] = []
    base = torch.cuda.memory_allocated(device)
    for batch in batch_sizes:
        sources = np.arange(batch) % avatar.frame_count
        latents = torch.from_numpy(avatar.latents[sources]).to(device, engine.dtype)
        audio = torch.randn(batch, 50, 384, device=device, dtype=engine.dtype)
        try:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            unet_ms = median_ms(functools.partial(engine.generator.step, latents, audio), device)
            predicted = engine.generator.step(latents, audio)
            decode_ms = median_ms(functools.partial(engine.codec.decode, predicted), device)
        except torch.cuda.OutOfMemoryError:
            rows.append({"batch": batch, "oom": True})
            break
        peak = torch.cuda.max_memory_allocated(device) - base
        rows.append(
            {
                "batch": batch,
                "peak_mb": round(peak / 1e6),
                "peak_mb_per_frame": round(peak / batch / 1e6, 1),
                "unet_ms_per_frame": round(unet_ms / batch, 3),
                "vae_decode_ms_per_frame": round(decode_ms / batch, 3),
                "model_fps": round(1000 * batch / (unet_ms + decode_ms), 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    torch.cuda.empty_cache()
    return rows


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int = 5) -> float:
    """Median milliseconds of `fn` (after one warm-up call), the device synchronized."""
    with torch.inference_mode():
        fn()
        synchronize(device)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            synchronize(device)
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def model_variants(engine: MuseTalkEngine, avatar: PreparedAvatar, batch: int) -> dict[str, Any]:
    """UNet + VAE decode ms/frame under candidate optimizations, and their PSNR to eager."""
    device = engine.device
    sources = np.arange(batch) % avatar.frame_count
    latents = torch.from_numpy(avatar.latents[sources]).to(device, engine.dtype)
    audio = torch.randn(batch, 50, 384, device=device, dtype=engine.dtype)
    if not isinstance(engine.generator, Generator):  # AOT packages have no module to convert
        raise TypeError("model variants need the eager UNet, not the engine's AOT packages")
    unet, vae = engine.generator.unet, engine.codec.vae
    out: dict[str, Any] = {"batch": batch}
    with torch.inference_mode():
        predicted = engine.generator.step(latents, audio)
        eager = engine.codec.decode(predicted).cpu().numpy()
    out["eager_ms_per_frame"] = {
        "unet": round(median_ms(lambda: engine.generator.step(latents, audio), device) / batch, 3),
        "vae_decode": round(median_ms(lambda: engine.codec.decode(predicted), device) / batch, 3),
    }
    # Decode only the latent rows under the mouth (rows 16..31 are the lower half) plus context.
    for context in (4, 8):
        top = 16 - context
        rows = predicted[:, :, top:, :]
        ms = median_ms(functools.partial(engine.codec.decode, rows), device) / batch
        with torch.inference_mode():
            decoded_rows = engine.codec.decode(rows).cpu().numpy()
        kept = decoded_rows[:, :, (128 - top * 8) :, :]
        out[f"decode_rows_from_{top}_ms_per_frame"] = round(ms, 3)
        out[f"decode_rows_from_{top}_psnr_lower_half_db"] = round(
            psnr(kept, eager[:, :, 128:, :]), 2
        )
    unet.to(memory_format=torch.channels_last)
    vae.to(memory_format=torch.channels_last)
    cl_latents = latents.contiguous(memory_format=torch.channels_last)
    out["channels_last_ms_per_frame"] = {
        "unet": round(
            median_ms(lambda: engine.generator.step(cl_latents, audio), device) / batch, 3
        ),
        "vae_decode": round(median_ms(lambda: engine.codec.decode(predicted), device) / batch, 3),
    }
    unet.to(memory_format=torch.contiguous_format)
    vae.to(memory_format=torch.contiguous_format)
    print(json.dumps(out), flush=True)
    return out


def decoder_compile_modes(
    engine: MuseTalkEngine, models: Path, avatar: PreparedAvatar, batch: int, modes: Sequence[str]
) -> dict[str, Any]:
    """VAE decode ms/frame with the decoder compiled in each torch.compile mode (a fresh codec
    per mode), compile seconds, and PSNR of its faces against eager: is autotuning worth it?"""
    device = engine.device
    sources = np.arange(batch) % avatar.frame_count
    latents = torch.from_numpy(avatar.latents[sources]).to(device, engine.dtype)
    audio = torch.randn(batch, 50, 384, device=device, dtype=engine.dtype)
    with torch.inference_mode():
        predicted = engine.generator.step(latents, audio)
        eager = engine.codec.decode(predicted).cpu().numpy()
    out: dict[str, Any] = {
        "batch": batch,
        "eager_ms_per_frame": round(
            median_ms(lambda: engine.codec.decode(predicted), device) / batch, 3
        ),
    }
    for mode in modes:
        codec = LatentCodec(ModelsLayout(models).vae_dir, device, engine.dtype)
        torch_mode, _, layout = mode.partition("+")  # "default+channels_last"
        if layout == "channels_last":
            codec.vae.to(memory_format=torch.channels_last)
        codec.vae.decoder = torch.compile(
            codec.vae.decoder, dynamic=False, mode=None if torch_mode == "default" else torch_mode
        )
        start = time.perf_counter()
        with torch.inference_mode():
            faces = codec.decode(predicted).cpu().numpy()
        out[mode] = {
            "compile_s": round(time.perf_counter() - start, 1),
            "ms_per_frame": round(
                median_ms(functools.partial(codec.decode, predicted), device) / batch, 3
            ),
            "psnr_vs_eager_db": round(psnr(faces, eager), 2),
        }
        print(json.dumps({mode: out[mode]}), flush=True)
    return out


def gpu_path(
    engine: MuseTalkEngine, avatar: PreparedAvatar, audio: Path, batch: int
) -> dict[str, Any]:
    """The GPU part of `speak` alone (no compose, no encoder): every frame of `audio` through
    the engine's own launch/collect loop at its `pipeline_depth`, as frames/s of the loop's wall
    time, against the GPU time of its stages (CUDA events): the gap is GPU idle."""
    with torch.inference_mode():
        tokens = engine.audio_encoder.frame_tokens(load_audio_16k(audio), avatar.fps)
    total = len(tokens)
    weights = np.ones(total, dtype=np.float32)
    frames = np.arange(total)

    def loop() -> tuple[float, dict[str, float]]:
        timings: dict[str, float] = {}
        in_flight: deque[Any] = deque()
        synchronize(engine.device)
        start = time.perf_counter()
        first = 0
        while first < total:
            size = engine.launch_size(batch, total - first)  # speak's batches, tail included
            in_flight.append(
                engine.launch_batch(avatar, tokens, weights, frames[first:][:size], size)
            )
            first += size
            if len(in_flight) >= engine.pipeline_depth:
                engine.collect_batch(in_flight.popleft(), timings)
        while in_flight:
            engine.collect_batch(in_flight.popleft(), timings)
        return time.perf_counter() - start, timings

    loop()  # warm-up
    wall, timings = sorted((loop() for _ in range(3)), key=lambda sample: sample[0])[1]
    gpu_ms = sum(timings.values())
    return {
        "pipeline_depth": engine.pipeline_depth,
        "fps": round(total / wall, 1),
        "wall_ms": round(wall * 1000, 1),
        "gpu_stages_ms": rounded(timings),
        "gpu_busy_share": round(gpu_ms / (wall * 1000), 3),
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def fp16_psnr(
    engine: MuseTalkEngine,
    models: Path,
    avatar: PreparedAvatar,
    batch: int = 16,
    dtype: torch.dtype | None = None,
) -> float:
    """PSNR (dB) of the engine's generated faces (or, with `dtype`, of fresh eager models in
    that dtype) against diffusers' fp32 models on the same inputs."""
    layout = ModelsLayout(models)
    device = engine.device
    sources = np.arange(batch) % avatar.frame_count
    latents = torch.from_numpy(avatar.latents[sources]).to(device)
    audio = torch.randn(
        batch, 50, 384, device=device, generator=torch.Generator(device).manual_seed(0)
    )
    with torch.inference_mode():
        if dtype is None:
            ours = engine.codec.decode(engine.generator.step(latents, audio)).cpu().numpy()
        else:
            unet = Generator(layout.unet_config, layout.unet_weights, device, dtype)
            vae = LatentCodec(layout.vae_dir, device, dtype)
            ours = vae.decode(unet.step(latents, audio)).cpu().numpy()
            del unet, vae
        # The reference is diffusers' modules in fp32 (no folded upsampling): the figure is
        # everything the engine's models differ by.
        generator = Generator(
            layout.unet_config, layout.unet_weights, device, torch.float32, fold_upsampling=False
        )
        codec = LatentCodec(layout.vae_dir, device, torch.float32, fold_upsampling=False)
        reference = codec.decode(generator.step(latents, audio)).cpu().numpy()
    del generator, codec
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return psnr(ours, reference)
