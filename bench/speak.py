"""End-to-end speak benchmark: our engine against a plain eager batch-20 path, in one run.

Writes random weights (full size by default: the real shapes and cost; `--tiny` for the CPU smoke
test), measures the cold start (weights on disk -> engine ready), builds a prepared avatar from
the sample video, then renders speech to a finished mp4 (H.264 + AAC) with

* the engine (`MuseTalkEngine.speak`) at each `--batch-sizes` value, and
* the plain path: the same weights eager at batch 20 in diffusers' modules as they are (no
  folded upsampling), faces copied to the host and blended there per frame with OpenCV, one
  encoder thread (the official realtime loop's shape),

and prints frames/s (median of `--runs`), the engine's stage breakdown, the latency of a 10 s
clip, peak GPU memory per batch size, the batch that fits a 24 GB card, the fp16-vs-fp32 PSNR
of the generated faces, the speed-up over the plain path and the share of the FLOP floor.

The avatar is "prepared" without the face models (S3FD/DWPose/BiSeNet are irrelevant to speak
throughput): every frame gets the same face box of the sample's real geometry and an elliptic
blend mask; its latents come from our VAE encoder on the real crops. The output says so.

    python bench/speak.py --models /tmp/models --out result.json            # GPU, full size
    python bench/speak.py --models /tmp/tiny --tiny --device cpu --quick    # CPU smoke
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from runtime.engine import segments as segmented
from runtime.engine import speak_pipeline
from runtime.engine.audio import frame_count, load_audio_16k
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.avatar_reader import decode_avatar
from runtime.engine.batch_sizes import batch_size_for_memory
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.engine_contract import SegmentPlan
from runtime.engine.frame_compose import crop_face
from runtime.engine.latents import Generator, LatentCodec
from runtime.engine.layout import ModelsLayout
from runtime.engine.media import VideoWriter, pick_video_codec
from runtime.engine.options import MODEL_VERSION, AvatarOptions, RenderOptions
from runtime.engine.random_weights import _write_unet, _write_vae, _write_whisper
from runtime.engine.weight_cache import WeightCache, default_cache_dir

MEDIA = Path(__file__).resolve().parents[1] / "examples" / "media"
FLOP_PER_FRAME = 800e9  # UNet ~178 GFLOP + VAE decode ~622 GFLOP at 256x256 (issue 10)
H100_DENSE_FP16_FLOPS = 750e12  # measured 8192^3 fp16/bf16 matmul on the device machine
PLAIN_BATCH = 20  # the official realtime script's batch
CARD_24GB = 24 * 1024**3
LATENCY_CLIP_S = 10.0


# The engine's own segment length for a split, before any row overrides it.
SPLIT_SEGMENT_FRAMES = speak_pipeline.SPLIT_SEGMENT_FRAMES


class Writer(NamedTuple):
    """How a render is encoded: one mp4 writer ("one"), the worker's path (a SegmentPlan,
    batches cut at segment boundaries: "segments"), or `speak` splitting a long clip itself
    ("split"); with `encoders` segment encoders of `threads` x264 threads each."""

    kind: str = "one"
    encoders: int = 1
    threads: int = segmented.ENCODER_THREADS
    split_frames: int = SPLIT_SEGMENT_FRAMES  # frames per segment of a "split"
    taper: bool = True  # a "split" with its last segment in halving pieces (SegmentPlan.taper)

    def as_report(self) -> dict[str, object]:
        """The fields that describe this writer (segment length and taper only for a split)."""
        fields = self._asdict()
        if self.kind != "split":
            del fields["split_frames"], fields["taper"]
        return fields

    @property
    def label(self) -> str:
        if self.kind == "one":
            return ""
        label = f", {self.kind} {self.encoders} encoders x {self.threads} threads"
        if self.kind == "split" and self.split_frames != SPLIT_SEGMENT_FRAMES:
            label += f", {self.split_frames}-frame segments"
        if self.kind == "split" and not self.taper:
            label += ", last segment whole"
        return label


ONE_WRITER = Writer()


class _NoFaces:
    """Stands in for the face models: the benchmark's avatar is built without them."""

    def locate(self, *args: object, **kwargs: object) -> list[None]:
        raise RuntimeError("the speak benchmark does not locate faces")

    def blend_masks(self, *args: object, **kwargs: object) -> list[None]:
        raise RuntimeError("the speak benchmark does not parse faces")


def write_models(root: Path, *, tiny: bool) -> float:
    """UNet, VAE and Whisper in the official layout (no face models); seconds taken."""
    start = time.perf_counter()
    layout = ModelsLayout(root)
    if not layout.unet_weights.is_file():
        root.mkdir(parents=True, exist_ok=True)
        _write_unet(layout, tiny=tiny, seed=0)
        _write_vae(layout, tiny=tiny, seed=1)
        _write_whisper(layout, tiny=tiny, seed=2)
        layout.write_marker(tiny=tiny, seed=0)
    return time.perf_counter() - start


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_engine(
    models: Path,
    device: torch.device,
    dtype: torch.dtype | None,
    *,
    compile_mode: str | None = None,
    cache_dir: Path | None = None,
) -> MuseTalkEngine:
    """The engine; compiled when `compile_mode` is given ("default" = torch's default mode,
    "aot" = the AOTInductor packages, built on first use)."""
    return MuseTalkEngine.load(
        models,
        device,
        dtype,
        locator=_NoFaces(),
        parser=_NoFaces(),
        compile_models=compile_mode is not None,
        compile_mode=None if compile_mode in ("default", "aot") else compile_mode,
        cache_dir=cache_dir,
        aot_packages=compile_mode == "aot",
    )


def bench_script(name: str) -> ModuleType:
    """A sibling script under bench/ (scripts, not a package: loaded by path): coldstart.py,
    which owns the fresh-process cold-start probes, official_loop.py and official_compare.py."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", Path(__file__).with_name(f"{name}.py")
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"bench/{name}.py not found beside bench/speak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def face_box(width: int, height: int) -> tuple[int, int, int, int]:
    """A face box of the sample's geometry: ~27% of the width, centred, upper third."""
    box_w = int(width * 0.27) // 2 * 2
    box_h = int(box_w * 1.2) // 2 * 2
    x1 = (width - box_w) // 2
    y1 = int(height * 0.18)
    return x1, y1, x1 + box_w, y1 + box_h


def elliptic_mask(box_w: int, box_h: int) -> np.ndarray:
    """A soft mask over the lower face, like the parsing mask's shape (0..255)."""
    yy, xx = np.mgrid[0:box_h, 0:box_w].astype(np.float32)
    ry, rx = (yy - box_h * 0.68) / (box_h * 0.32), (xx - box_w / 2) / (box_w * 0.42)
    inside = np.clip(1.5 - np.sqrt(rx**2 + ry**2) * 1.5, 0, 1)
    return (inside * 255).round().astype(np.uint8)


def prepared_avatar(engine: MuseTalkEngine, avatar_path: Path) -> PreparedAvatar:
    video = decode_avatar(avatar_path, still_fps=25)
    frames = np.stack(video.frames)
    height, width = frames.shape[1:3]
    box = face_box(width, height)
    crops = np.stack([crop_face(frame, box) for frame in frames])
    latents = np.concatenate(
        [
            engine.codec.encode_crops(crops[i : i + 16]).float().cpu().numpy()
            for i in range(0, len(crops), 16)
        ]
    )
    mask = elliptic_mask(box[2] - box[0], box[3] - box[1])
    return PreparedAvatar(
        frames=frames,
        boxes=np.tile(np.array(box, dtype=np.int32), (len(frames), 1)),
        has_face=np.ones(len(frames), dtype=bool),
        latents=latents,
        masks=tuple(mask for _ in frames),
        fps=video.fps,
        options=AvatarOptions(),
        source_sha256="0" * 64,
        model_version=MODEL_VERSION,
    )


def write_clip(source: Path, seconds: float, out: Path) -> Path:
    """The first `seconds` of `source` as a 16 kHz mono 16-bit wav."""
    audio = load_audio_16k(source)[: int(seconds * 16000)]
    with wave.open(str(out), "wb") as stream:
        stream.setnchannels(1)
        stream.setsampwidth(2)
        stream.setframerate(16000)
        stream.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return out


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


def timed_runs(
    fn: Callable[[], dict[str, float]], runs: int, *, warm_up: bool = True
) -> tuple[float, dict[str, float]]:
    """Median wall seconds of `runs` calls (after one warm-up) and the median run's timings."""
    if warm_up:
        fn()  # kernel selection, allocator, encoder probe
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        timings = fn()
        samples.append((time.perf_counter() - start, timings))
    samples.sort(key=lambda sample: sample[0])
    wall, timings = samples[len(samples) // 2]
    return wall, timings


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
            unet_ms = _median_ms(
                lambda latents=latents, audio=audio: engine.generator.step(latents, audio), device
            )
            predicted = engine.generator.step(latents, audio)
            decode_ms = _median_ms(
                lambda predicted=predicted: engine.codec.decode(predicted), device
            )
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


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int = 5) -> float:
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
    unet, vae = engine.generator.unet, engine.codec.vae
    out: dict[str, Any] = {"batch": batch}
    with torch.inference_mode():
        predicted = engine.generator.step(latents, audio)
        eager = engine.codec.decode(predicted).cpu().numpy()
    out["eager_ms_per_frame"] = {
        "unet": round(_median_ms(lambda: engine.generator.step(latents, audio), device) / batch, 3),
        "vae_decode": round(_median_ms(lambda: engine.codec.decode(predicted), device) / batch, 3),
    }
    # Decode only the latent rows under the mouth (rows 16..31 are the lower half) plus context.
    for context in (4, 8):
        top = 16 - context
        rows = predicted[:, :, top:, :]
        ms = _median_ms(lambda rows=rows: engine.codec.decode(rows), device) / batch
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
            _median_ms(lambda: engine.generator.step(cl_latents, audio), device) / batch, 3
        ),
        "vae_decode": round(_median_ms(lambda: engine.codec.decode(predicted), device) / batch, 3),
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
            _median_ms(lambda: engine.codec.decode(predicted), device) / batch, 3
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
                _median_ms(lambda c=codec: c.decode(predicted), device) / batch, 3
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
    from collections import deque

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
        "gpu_stages_ms": _rounded(timings),
        "gpu_busy_share": round(gpu_ms / (wall * 1000), 3),
    }


def host_activity() -> dict[str, Any]:
    """Load average and other processes on the GPU: a shared or leftover-busy machine slows
    every row (compose and encode most), so a report says whether it ran alone."""
    other: list[str] = []
    if nvidia_smi := shutil.which("nvidia-smi"):
        listed = subprocess.run(  # noqa: S603 - the resolved nvidia-smi, fixed arguments
            [nvidia_smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        mine = str(os.getpid())
        other = [line for line in listed.splitlines() if line.split(",")[0].strip() != mine]
    return {"load_1min": round(os.getloadavg()[0], 2), "other_gpu_processes": other}


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


def encoder_fps(
    avatar: PreparedAvatar, audio: Path, out: Path, preset: str, frames: int, thread_type: str
) -> float:
    """The mp4 writer alone (BGR -> I420 + libx264 + mux), fed frames as fast as it takes."""
    height, width = avatar.frames.shape[1:3]
    start = time.perf_counter()
    with VideoWriter(
        out,
        width=width,
        height=height,
        fps=avatar.fps,
        audio_path=audio,
        preset=preset,
        thread_type=thread_type,
    ) as writer:
        for i in range(frames):
            writer.write(avatar.frames[avatar.cycle_index(i)])
    return frames / (time.perf_counter() - start)


def parallel_encoder_fps(
    avatar_path: Path,
    audio: Path,
    work: Path,
    preset: str,
    frames: int,
    encoders: int,
    threads: int | None = None,
) -> float:
    """Frames/s of `encoders` mp4 writers running at once (each its own segment of `frames`),
    fed as fast as they take frames: the ceiling parallel segment encoders could reach. With
    `threads`, each is a segment encoder (that many x264 threads, the segments' x264 options,
    MPEG-TS, no audio); else x264 picks its threads and the file is an mp4 with audio."""
    video = decode_avatar(avatar_path, still_fps=25)
    source = np.stack(video.frames)
    height, width = source.shape[1:3]

    def encode(segment: int) -> None:
        with VideoWriter(
            work / (f"segment-{segment}.ts" if threads else f"segment-{segment}.mp4"),
            width=width,
            height=height,
            fps=video.fps,
            audio_path=None if threads else audio,
            preset=preset,
            threads=threads,
            x264_options=segmented.X264_OPTIONS if threads else None,
        ) as writer:
            for i in range(frames):
                writer.write(source[i % len(source)])

    start = time.perf_counter()
    with ThreadPoolExecutor(encoders, thread_name_prefix="segment") as pool:
        list(pool.map(encode, range(encoders)))
    return encoders * frames / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="written if missing")
    parser.add_argument("--tiny", action="store_true", help="tiny weights (CPU smoke test)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float16", "float32"], default=None)
    parser.add_argument("--avatar", type=Path, default=MEDIA / "yongen.mp4")
    parser.add_argument("--audio", type=Path, default=MEDIA / "eng.wav")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio used for throughput")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-sizes", default="20,64", help="engine batches to render with")
    parser.add_argument("--memory-batches", default="8,16,32,64,96,128")
    parser.add_argument("--presets", default="veryfast,superfast", help="libx264 presets")
    parser.add_argument("--quick", action="store_true", help="1 s of audio, 1 run, no extras")
    parser.add_argument("--variants", action="store_true", help="channels_last, row decode")
    parser.add_argument("--compile", action="store_true", help="also render with torch.compile")
    parser.add_argument(
        "--compile-modes",
        default="default",
        help="torch.compile modes to render with (reduce-overhead = CUDA graphs)",
    )
    parser.add_argument("--cache-dir", type=Path, help="weight/compile cache (default: beside)")
    parser.add_argument("--encoder-frames", type=int, default=500)
    parser.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="also render the last compile mode with torch.backends.cudnn.benchmark on",
    )
    parser.add_argument(
        "--cold-compile",
        action="store_true",
        help="also time torch.compile starts: from nothing, then from its cached artifacts",
    )
    parser.add_argument(
        "--encoder-only",
        metavar="COUNTS",
        help="only measure 1..n mp4 writers running at once, e.g. 1,2,3 (no models)",
    )
    parser.add_argument(
        "--decoder-modes", help="also time the decoder compiled in these modes, e.g. default"
    )
    parser.add_argument(
        "--segment-encoders",
        default="",
        metavar="COUNTS",
        help="also render through segment encoders, e.g. 1,2,3 (the worker's path; compiled "
        "engines also through speak's own split of a long clip)",
    )
    parser.add_argument(
        "--segment-threads",
        default=str(segmented.ENCODER_THREADS),
        help="x264 threads per segment encoder: the first for every row, the others for compiled "
        "rows at the first preset",
    )
    parser.add_argument(
        "--split-frames",
        default=str(SPLIT_SEGMENT_FRAMES),
        metavar="FRAMES",
        help="frames per segment when speak splits a clip itself, e.g. 125,32 (each a row)",
    )
    parser.add_argument(
        "--split-tails",
        default="taper",
        help="the last segment of speak's split: taper (halving pieces, the engine's default) "
        "and/or whole, e.g. taper,whole (each a row)",
    )
    parser.add_argument(
        "--skip-cold-start", action="store_true", help="no fresh-process cold start probes"
    )
    parser.add_argument(
        "--compiled-only",
        action="store_true",
        help="only the plain baseline and the compiled rows (no eager rows, encoder or PSNR "
        "extras): the short run for a compiled-path change",
    )
    parser.add_argument(
        "--pipeline-depths",
        default="",
        metavar="DEPTHS",
        help="compiled rows at each `pipeline_depth` (batches in flight), e.g. 1,2; and the GPU "
        "path alone (no compose, no encoder) at each",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="also the PSNR of bfloat16 models against fp32"
    )
    parser.add_argument(
        "--cold-states",
        default="eager_uncached,eager_cached",
        help="fresh-process cold starts to time (bench/coldstart.py STATES; aot_build,aot for "
        "the AOT packages, minutes to build)",
    )
    parser.add_argument(
        "--official",
        type=Path,
        help="a TMElyralab/MuseTalk checkout: also run its realtime loop (bench/official_loop.py) "
        "in this run, and give every row's ratio to it",
    )
    parser.add_argument("--official-runs", type=int, default=5, help="renders of the official loop")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    args = parser.parse_args(argv)
    if not set(args.split_tails.split(",")) <= {"taper", "whole"}:
        parser.error(f"--split-tails: taper and/or whole, not {args.split_tails!r}")
    if args.compiled_only and not args.compile:
        parser.error("--compiled-only needs --compile (it keeps only the compiled rows)")
    device = torch.device(args.device)
    compile_modes = args.compile_modes.split(",") if args.compile else []
    if args.encoder_only:
        work = Path(tempfile.mkdtemp(prefix="speak-bench-"))
        clip = write_clip(args.audio, args.seconds, work / "speech.wav")
        result = {
            "encoders_at_once_fps": {
                f"{count} x {preset}": round(
                    parallel_encoder_fps(
                        args.avatar, clip, work, preset, args.encoder_frames, int(count)
                    ),
                    1,
                )
                for preset in args.presets.split(",")
                for count in args.encoder_only.split(",")
            },
            "frames_per_encoder": args.encoder_frames,
            "host_cpus": os.cpu_count(),
        }
        print(json.dumps(result), flush=True)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return result
    dtype = getattr(torch, args.dtype) if args.dtype else None
    if args.quick:
        args.seconds, args.runs = min(args.seconds, 1.0), 1
    presets = args.presets.split(",")
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "busy_before": host_activity(),
        "torch": torch.__version__,
        "weights": "random, tiny" if args.tiny else "random, full size (official shapes)",
        "avatar": (
            f"{args.avatar.name}: real frames; one face box of the sample's geometry and an "
            "elliptic blend mask for every frame (no face models); latents from our VAE encoder"
        ),
    }
    report["write_weights_s"] = round(write_models(args.models, tiny=args.tiny), 2)

    synchronize(device)
    start = time.perf_counter()
    engine = load_engine(args.models, device, dtype, cache_dir=args.cache_dir)
    synchronize(device)
    report["cold_start_s"] = round(time.perf_counter() - start, 2)
    report["cold_start_ms"] = _rounded(engine.load_timings_ms)
    report["dtype"] = str(engine.dtype).removeprefix("torch.")
    if device.type == "cuda":
        report["weights_gpu_mb"] = round(torch.cuda.memory_allocated(device) / 1e6)

    start = time.perf_counter()
    avatar = prepared_avatar(engine, args.avatar)
    report["avatar_build_s"] = round(time.perf_counter() - start, 2)
    height, width = avatar.frames.shape[1:3]
    box = avatar.boxes[0].tolist()
    report["avatar_geometry"] = {
        "width": width,
        "height": height,
        "frames": avatar.frame_count,
        "fps": avatar.fps,
        "face_box": box,
    }

    work = Path(tempfile.mkdtemp(prefix="speak-bench-"))
    audio = write_clip(args.audio, args.seconds, work / "speech.wav")
    frames = frame_count(len(load_audio_16k(audio)), avatar.fps)
    report["frames"] = frames
    options = RenderOptions(skip_silence=False)  # every frame generated: the worst case

    def engine_run(
        batch: int,
        preset: str,
        engine: MuseTalkEngine = engine,
        writer: Writer = ONE_WRITER,
        speech: Path = audio,
        out: Path = work / "out.mp4",
    ) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            engine.encoder_preset = preset
            segmented.ENCODER_THREADS = writer.threads
            speak_pipeline.SPLIT_SEGMENT_FRAMES = writer.split_frames
            speak_pipeline.SPLIT_TAPER = writer.taper
            engine.segment_encoders = writer.encoders if writer.kind == "split" else 1
            finished: list[float] = []  # when each segment was done (the worker uploads it)
            plan = (
                SegmentPlan(
                    directory=work / "segments",
                    encoders=writer.encoders,
                    on_segment=lambda segment: finished.append(time.perf_counter()),
                )
                if writer.kind == "segments"
                else None
            )
            start = time.perf_counter()
            rendered = engine.speak(
                avatar, speech, out, options=options, batch_size=batch, segments=plan
            )
            assert speech != audio or rendered.frames == frames
            if finished:  # the first segment a user could get, from the render's start
                return {**rendered.timings_ms, "first_segment": (finished[0] - start) * 1000}
            return rendered.timings_ms

        return run

    segment_counts = [int(n) for n in args.segment_encoders.split(",") if n]
    segment_threads = [int(n) for n in args.segment_threads.split(",") if n]
    split_frames = [int(n) for n in args.split_frames.split(",") if n]
    split_tapers = [flag == "taper" for flag in args.split_tails.split(",") if flag]

    def segment_writers(compiled: bool, preset: str) -> list[Writer]:
        """The worker's segmented path per count of encoders (per thread count too for a
        compiled engine at the first preset), then `speak`'s own split (compiled only)."""
        every_thread_count = compiled and preset == presets[0]
        chosen = []
        for threads in segment_threads if every_thread_count else segment_threads[:1]:
            chosen += [Writer("segments", n, threads) for n in segment_counts]
        if compiled:
            chosen += [
                Writer("split", n, segment_threads[0], frames, taper)
                for frames in split_frames
                for taper in split_tapers
                for n in segment_counts
                if n > 1
            ]
        return chosen

    rows = []
    plain = plain_models(engine, args.models, args.cache_dir)
    wall, timings = timed_runs(
        partial(plain_speak, engine, plain, avatar, audio, work / "plain.mp4", presets[0]),
        args.runs,
        warm_up=not args.quick,
    )
    del plain
    plain_fps = frames / wall
    rows.append(
        {
            "path": f"plain eager batch {PLAIN_BATCH}",
            "preset": presets[0],
            "fps": round(plain_fps, 1),
            "stages_ms": _rounded(timings),
        }
    )
    print(json.dumps(rows[-1]), flush=True)
    if args.official:
        report["official_loop"] = official_loop(args, device, avatar, audio)
    engine_batches = [int(b) for b in args.batch_sizes.split(",")]

    def measure(
        batch: int,
        preset: str,
        engine: MuseTalkEngine,
        mode: str | None,
        writer: Writer,
        depth: int | None = None,
    ) -> None:
        """One row: the median of `--runs` renders of the whole clip."""
        wall, timings = timed_runs(
            engine_run(batch, preset, engine, writer), args.runs, warm_up=not args.quick
        )
        compiled = f" compiled {mode}" if mode else ""
        in_flight = f", depth {depth}" if depth is not None else ""
        rows.append(
            {
                "path": f"engine batch {batch}{compiled}{in_flight}{writer.label}",
                "pipeline_depth": engine.pipeline_depth,
                "preset": preset,
                "fps": round(frames / wall, 1),
                "stages_ms": _rounded(timings),
                "batch": batch,
                "compile_mode": mode,
                "writer": writer.as_report(),
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    if not args.compiled_only:
        for batch in engine_batches:
            for preset in presets:
                measure(batch, preset, engine, None, Writer())
        for writer in segment_writers(False, presets[0]):
            measure(max(engine_batches), presets[0], engine, None, writer)
    if not (args.quick or args.compiled_only):
        report["encoder_only_fps"] = {
            f"{preset} {threads} threads": round(
                encoder_fps(avatar, audio, work / "enc.mp4", preset, args.encoder_frames, threads),
                1,
            )
            for preset in presets
            for threads in ("SLICE", "FRAME")
        }
        if segment_counts:
            # Segment encoders alone (the segments' settings), fed as fast as they take frames.
            report["segment_encoders_at_once_fps"] = {
                f"{count} x {threads} threads": round(
                    parallel_encoder_fps(
                        args.avatar, audio, work, presets[0], args.encoder_frames, count, threads
                    ),
                    1,
                )
                for threads in sorted({*segment_threads, 4, 6, 8})
                for count in segment_counts
            }
        report["psnr_fp16_vs_fp32_db"] = (
            round(fp16_psnr(engine, args.models, avatar), 2)
            if engine.dtype != torch.float32
            else None
        )
        if args.bf16:
            report["psnr_bf16_vs_fp32_db"] = round(
                fp16_psnr(engine, args.models, avatar, dtype=torch.bfloat16), 2
            )
    if device.type == "cuda" and args.decoder_modes:
        report["decoder_compile_modes"] = decoder_compile_modes(
            engine, args.models, avatar, max(engine_batches), args.decoder_modes.split(",")
        )
    if device.type == "cuda" and args.variants:
        report["model_variants"] = model_variants(engine, avatar, max(engine_batches))
    if device.type == "cuda":
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
    engines = {"eager": engine}
    variants = [(mode, False) for mode in compile_modes]
    if compile_modes and args.cudnn_benchmark:
        variants.append((compile_modes[-1], True))
    depths = [int(n) for n in args.pipeline_depths.split(",") if n] or [engine.pipeline_depth]
    for mode, cudnn_benchmark in variants:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        name = f"{mode} cudnn-benchmark" if cudnn_benchmark else mode
        batch = max(engine_batches)
        start = time.perf_counter()
        # Each mode its own cache directory (weight cache and compile artifacts): the artifacts
        # `compile_artifacts` reports for a mode are that mode's alone.
        mode_cache = compile_cache_dir(args.cache_dir or default_cache_dir(args.models), mode)
        compiled = load_engine(args.models, device, dtype, compile_mode=mode, cache_dir=mode_cache)
        engine_run(batch, presets[-1], compiled)()
        report.setdefault("compile_first_render_s", {})[name] = round(
            time.perf_counter() - start, 1
        )
        report.setdefault("compile_artifacts", {})[name] = {
            "loaded": compiled.compile_artifacts_loaded,
            "directory": str(mode_cache),
        }
        engines[f"compiled {name}"] = compiled
        for depth in depths:
            compiled.pipeline_depth = depth
            if device.type == "cuda":
                report.setdefault("gpu_path", {})[f"{name} depth {depth}"] = gpu_path(
                    compiled, avatar, audio, batch
                )
                print(json.dumps(report["gpu_path"][f"{name} depth {depth}"]), flush=True)
            for preset in presets:
                measure(batch, preset, compiled, name, Writer(), depth)
                for writer in segment_writers(True, preset):
                    measure(batch, preset, compiled, name, writer, depth)
    torch.backends.cudnn.benchmark = False
    report["runs"] = with_ratios(rows, plain_fps, report.get("official_loop"))
    report["busy_after"] = host_activity()
    best = max(rows[1:], key=lambda row: row["fps"])
    report["best"] = {
        "path": best["path"],
        "preset": best["preset"],
        "fps": best["fps"],
        "ratio_to_plain": round(best["fps"] / plain_fps, 2),
        "ratio_to_official": best.get("vs_official"),
        "share_of_flop_floor": (
            round(best["fps"] * FLOP_PER_FRAME / H100_DENSE_FP16_FLOPS, 3)
            if device.type == "cuda" and not args.tiny
            else None
        ),
    }
    best_batch = int(best["batch"])
    best_mode = best["compile_mode"]
    best_engine = engines["eager" if best_mode is None else f"compiled {best_mode}"]
    best_writer = Writer(**best["writer"])
    best_engine.pipeline_depth = best["pipeline_depth"]
    report["best"]["writer"] = best["writer"]

    clip = write_clip(args.audio, min(LATENCY_CLIP_S, args.seconds), work / "clip.wav")
    latencies = []
    for _ in range(args.runs):
        render = engine_run(
            best_batch, best["preset"], best_engine, best_writer, clip, work / "clip.mp4"
        )
        start = time.perf_counter()
        render()
        latencies.append(time.perf_counter() - start)
    report["latency_10s_clip_s"] = round(statistics.median(latencies), 3)

    if device.type == "cuda" and not args.skip_cold_start:
        states = args.cold_states.split(",")
        if args.cold_compile:
            states += ["compiled_first", "compiled_cached"]
        report["cold_start_fresh_process"] = bench_script("coldstart").cold_starts(
            args.models, str(device), states, work
        )
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text + "\n")
    return report


def official_loop(
    args: argparse.Namespace, device: torch.device, avatar: PreparedAvatar, audio: Path
) -> dict[str, Any]:
    """Upstream's realtime loop by its own code on the same weights, avatar and speech
    (bench/official_loop.py), median of `--official-runs`; its models are freed after."""
    module = bench_script("official_loop")
    compare = bench_script("official_compare")
    loop = module.OfficialLoop(args.official, args.models, device, avatar, compare)
    runs = 1 if args.quick else args.official_runs
    result: dict[str, Any] = module.measure(loop, audio, avatar.fps, runs)
    del loop
    if device.type == "cuda":
        torch.cuda.empty_cache()
    print(json.dumps(result), flush=True)
    return result


def with_ratios(
    rows: list[dict[str, Any]], plain_fps: float, official: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Every row's frames/s over the plain path's and, when it ran, the official loop's."""
    for row in rows:
        row["vs_plain"] = round(row["fps"] / plain_fps, 2)
        if official:
            row["vs_official"] = round(row["fps"] / official["fps"], 2)
    return rows


def compile_cache_dir(root: Path, mode: str) -> Path:
    """Where the benchmark keeps one compile mode's artifacts (and a weight cache)."""
    return root.with_name(f"{root.name}-{mode.replace('/', '+').replace(' ', '-')}")


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {stage: round(ms, 1) for stage, ms in timings.items()}


if __name__ == "__main__":
    main()
