"""The speak benchmark's baselines: the plain eager path (the official realtime loop's shape on
diffusers' own modules) and upstream's realtime loop run by its own code."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from bench.speak_setup import bench_script, synchronize
from runtime.engine.audio import frame_count, load_audio_16k
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.latents import Generator, LatentCodec
from runtime.engine.layout import ModelsLayout
from runtime.engine.media import VideoWriter
from runtime.engine.video_encoding import pick_video_codec
from runtime.engine.weight_cache import WeightCache, default_cache_dir

PLAIN_BATCH = 20  # the official realtime script's batch


class PlainModels(NamedTuple):
    generator: Generator
    codec: LatentCodec


def plain_models(engine: MuseTalkEngine, models: Path, cache_dir: Path | None) -> PlainModels:
    """The UNet and the VAE as diffusers builds them (the engine's come with folded
    upsamplers), from the engine's weight cache, for the plain baseline."""
    layout = ModelsLayout(models)
    cache = WeightCache(cache_dir or default_cache_dir(models))
    device, dtype = engine.device, engine.dtype
    return PlainModels(
        Generator(
            layout.unet_config,
            layout.unet_weights,
            device,
            dtype,
            cache=cache,
            fold_upsampling=False,
        ),
        LatentCodec(layout.vae_dir, device, dtype, cache=cache, fold_upsampling=False),
    )


def plain_speak(
    engine: MuseTalkEngine,
    plain: PlainModels,
    avatar: PreparedAvatar,
    audio: Path,
    out: Path,
    preset: str,
) -> dict[str, float]:
    """The official realtime loop's shape with the plain models: eager batch 20, faces to the
    host, per-frame OpenCV resize + integer blend on the CPU, one encoder thread."""
    timings: dict[str, float] = {}

    def lap(stage: str, start: float) -> float:
        synchronize(engine.device)
        now = time.perf_counter()
        timings[stage] = timings.get(stage, 0.0) + (now - start) * 1000
        return now

    start = time.perf_counter()
    audio_16k = load_audio_16k(audio)
    total = frame_count(len(audio_16k), avatar.fps)
    tokens = engine.audio_encoder.frame_tokens(audio_16k, avatar.fps)
    start = lap("audio", start)
    height, width = avatar.frames.shape[1:3]
    codec = pick_video_codec(prefer_gpu=engine.device.type == "cuda")
    with (
        VideoWriter(
            out,
            width=width,
            height=height,
            fps=avatar.fps,
            audio_path=audio,
            codec=codec,
            preset=preset,
        ) as writer,
        torch.inference_mode(),
    ):
        for first in range(0, total, PLAIN_BATCH):
            indices = np.arange(first, min(first + PLAIN_BATCH, total))
            sources = [avatar.cycle_index(int(i)) for i in indices]
            start = time.perf_counter()
            latents = torch.from_numpy(avatar.latents[sources]).to(engine.device, engine.dtype)
            audio_batch = tokens[torch.from_numpy(indices)].to(engine.device, engine.dtype)
            predicted = plain.generator.step(latents, audio_batch + engine._positional)
            start = lap("unet", start)
            faces = plain.codec.decode(predicted).permute(0, 2, 3, 1).cpu().numpy()
            start = lap("vae_decode", start)
            for face_rgb, source in zip(faces, sources, strict=True):
                x1, y1, x2, y2 = (int(v) for v in avatar.boxes[source])
                frame = avatar.frames[source].copy()
                face = cv2.resize(face_rgb[..., ::-1], (x2 - x1, y2 - y1))
                mask = avatar.masks[source].astype(np.int32)[..., None]
                mixed = frame[y1:y2, x1:x2].astype(np.int32) * (255 - mask) + face * mask
                frame[y1:y2, x1:x2] = ((mixed + 128 + ((mixed + 128) >> 8)) >> 8).astype(np.uint8)
                writer.write(frame)
            start = lap("blend_and_queue", start)
        start = time.perf_counter()
    lap("encode_flush", start)
    return timings


def official_loop(
    args: argparse.Namespace, device: torch.device, avatar: PreparedAvatar, audio: Path
) -> dict[str, Any]:
    """Upstream's realtime loop by its own code on the same weights, avatar and speech
    (bench/official_loop.py), median of `--official-runs`; its models are freed after."""
    module = bench_script("official_loop")
    loop = module.OfficialLoop(args.official, args.models, device, avatar)
    runs = 1 if args.quick else args.official_runs
    result: dict[str, Any] = module.measure(loop, audio, avatar.fps, runs)
    del loop
    if device.type == "cuda":
        torch.cuda.empty_cache()
    print(json.dumps(result), flush=True)
    return result
