"""What the speak benchmark renders with: random weights, the engine (eager or compiled, with
its cold start timed), the avatar prepared without face models, and the speech clip."""

from __future__ import annotations

import argparse
import importlib.util
import time
import wave
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from bench.no_faces import NoFaces
from bench.speak_report import rounded
from runtime.engine.audio import load_audio_16k
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.avatar_reader import decode_avatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.frame_compose import crop_face
from runtime.engine.layout import ModelsLayout
from runtime.engine.options import MODEL_VERSION, AvatarOptions
from runtime.engine.random_weights import _write_unet, _write_vae, _write_whisper


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
        # the benchmark's avatar is built without the face models
        locator=NoFaces("the speak benchmark"),
        parser=NoFaces("the speak benchmark"),
        compile_models=compile_mode is not None,
        compile_mode=None if compile_mode in ("default", "aot") else compile_mode,
        cache_dir=cache_dir,
        aot_packages=compile_mode == "aot",
    )


def compile_cache_dir(root: Path, mode: str) -> Path:
    """Where the benchmark keeps one compile mode's artifacts (and a weight cache)."""
    return root.with_name(f"{root.name}-{mode.replace('/', '+').replace(' ', '-')}")


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


def cold_start(
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype | None,
    report: dict[str, Any],
) -> tuple[MuseTalkEngine, PreparedAvatar]:
    """Weights written, the eager engine loaded and the avatar built, each timed into `report`
    (the in-process cold start: weights on disk to engine loaded, empty weight cache)."""
    report["write_weights_s"] = round(write_models(args.models, tiny=args.tiny), 2)
    synchronize(device)
    start = time.perf_counter()
    engine = load_engine(args.models, device, dtype, cache_dir=args.cache_dir)
    synchronize(device)
    report["cold_start_s"] = round(time.perf_counter() - start, 2)
    report["cold_start_ms"] = rounded(engine.load_timings_ms)
    report["dtype"] = str(engine.dtype).removeprefix("torch.")
    if device.type == "cuda":
        report["weights_gpu_mb"] = round(torch.cuda.memory_allocated(device) / 1e6)

    start = time.perf_counter()
    avatar = prepared_avatar(engine, args.avatar)
    report["avatar_build_s"] = round(time.perf_counter() - start, 2)
    height, width = avatar.frames.shape[1:3]
    report["avatar_geometry"] = {
        "width": width,
        "height": height,
        "frames": avatar.frame_count,
        "fps": avatar.fps,
        "face_box": avatar.boxes[0].tolist(),
    }
    return engine, avatar
