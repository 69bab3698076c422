"""Preparation benchmark: our batched `MuseTalkEngine.prepare` against a per-frame path shaped
like the official code, on the same avatar and the same random weights, in one run.

The avatar is the sample video (`examples/media/yongen.mp4`, 1216x704 at 25 fps) looped to
`--seconds` (30 s = 750 frames by default). Both paths decode it the same way (PyAV), then

* **batched** (ours): `engine.prepare` - S3FD in batches of same-sized frames, DWPose on
  batches of whole-frame crops, VAE encoding of masked + reference crops in batches, BiSeNet in
  batches, the per-frame host work (crops, resizes, mask morphology) on a thread pool;
* **per-frame** (the official order, `scripts/realtime_inference.py` preparation): for each
  frame DWPose then S3FD on that one frame, then for each frame the crop and two VAE encodes
  (masked, then reference) of batch 1, then for each frame its BiSeNet parse and mask.

It prints per-stage ms/frame for both, total seconds, the speed-up, and how far the two paths'
results agree (boxes, latents, masks). Weights: full-size random VAE and face models
(`make-weights`' writers); the UNet and Whisper are written tiny because preparation does not
run them. `--smoke` is a CPU check of the script itself: tiny VAE, a downscaled 2-frame clip.

    python bench/prepare.py --models /tmp/prep-models --out result.json       # GPU
    python bench/prepare.py --smoke --models /tmp/prep-tiny --out smoke.json   # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import av
import cv2
import numpy as np
import torch

from runtime.common.jobs import AvatarOptions
from runtime.engine.engine import MuseTalkEngine, crop_face, mask_over_box
from runtime.engine.faces.boxes import FaceBox, landmark_box, overlaps_frame, with_extra_margin
from runtime.engine.faces.weights import (
    write_random_bisenet,
    write_random_dwpose,
    write_random_s3fd,
)
from runtime.engine.latents import crops_to_pixels, mask_lower_half
from runtime.engine.layout import ModelsLayout
from runtime.engine.media import decode_avatar
from runtime.engine.weights import _write_unet, _write_vae, _write_whisper

MEDIA = Path(__file__).resolve().parents[1] / "examples" / "media"
STAGES = ("decode", "s3fd", "dwpose", "crop", "vae_encode", "parse")
WARMUP_FRAMES = 8
T = TypeVar("T")


def write_models(root: Path, *, tiny_vae: bool) -> None:
    """VAE (full or tiny) and the full-size face models; tiny UNet and Whisper (not run here)."""
    layout = ModelsLayout(root)
    if layout.vae_dir.is_dir() and layout.s3fd.is_file():
        return
    root.mkdir(parents=True, exist_ok=True)
    _write_unet(layout, tiny=True, seed=0)
    _write_whisper(layout, tiny=True, seed=2)
    _write_vae(layout, tiny=tiny_vae, seed=1)
    write_random_s3fd(layout.s3fd, 3)
    write_random_dwpose(layout.dwpose, 4)
    write_random_bisenet(layout.face_parse_dir, 5)
    layout.write_marker(tiny=tiny_vae, seed=0)


def write_avatar(out: Path, *, frames: int, scale: float) -> Path:
    """The sample video looped (restarting at frame 0) to `frames` frames, H.264 CRF 18."""
    source = decode_avatar(MEDIA / "yongen.mp4", still_fps=25).frames
    if scale != 1.0:
        source = [
            cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in source
        ]
    height, width = source[0].shape[:2]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i in range(frames):
            image = source[i % len(source)][: stream.height, : stream.width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out


def say(message: str) -> None:
    """Progress on stderr, so a run cut short still shows how far it got."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def lap(timings: dict[str, float], stage: str, device: torch.device) -> Iterator[None]:
    synchronize(device)
    start = time.perf_counter()
    yield
    synchronize(device)
    timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000


def timed(fn: Callable[..., T], timings: dict[str, float], stage: str, device: torch.device):  # type: ignore[no-untyped-def]
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with lap(timings, stage, device):
            return fn(*args, **kwargs)

    return wrapper


def batched(engine: MuseTalkEngine, avatar: Path) -> tuple[Any, dict[str, float], float]:
    """`engine.prepare` with S3FD and DWPose timed apart inside its `locate` stage."""
    timings: dict[str, float] = {}
    locator: Any = engine.locator
    detect, landmarks = locator.detector.detect, locator.landmarker.face_landmarks
    locator.detector.detect = timed(detect, timings, "s3fd", engine.device)
    locator.landmarker.face_landmarks = timed(landmarks, timings, "dwpose", engine.device)
    try:
        synchronize(engine.device)
        start = time.perf_counter()
        prepared = engine.prepare(avatar, AvatarOptions())
        synchronize(engine.device)
        total = time.perf_counter() - start
    finally:
        locator.detector.detect, locator.landmarker.face_landmarks = detect, landmarks
    stages = dict(prepared.timings_ms)
    stages.pop("locate", None)
    stages.update(timings)
    return prepared, stages, total


@torch.inference_mode()
def per_frame(engine: MuseTalkEngine, avatar: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """The official preparation order, one frame at a time per model, with our models."""
    device, timings = engine.device, {}
    locator: Any = engine.locator
    with lap(timings, "decode", device):
        frames = decode_avatar(avatar, still_fps=25).frames
    boxes: list[FaceBox | None] = []
    for frame in frames:
        with lap(timings, "dwpose", device):
            lm = locator.landmarker.face_landmarks([frame], batch_size=1)[0]
        with lap(timings, "s3fd", device):
            detected = locator.detector.detect([frame], batch_size=1)[0]
        if detected is None:
            boxes.append(None)
            continue
        height, width = frame.shape[:2]
        box = with_extra_margin(
            landmark_box(lm, detected, bbox_shift=0), extra_margin=10, frame_height=height
        )
        boxes.append(box if overlaps_frame(box, width, height) else None)
    latents = np.zeros((len(frames), 8, 32, 32), np.float32)
    vae, scale = engine.codec.vae, engine.codec.scaling_factor
    for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        if box is None:
            continue
        with lap(timings, "crop", device):
            crop = crop_face(frame, (box.x1, box.y1, box.x2, box.y2))
        with lap(timings, "vae_encode", device):
            pixels = crops_to_pixels(crop[None])
            halves = []
            for image in (mask_lower_half(pixels), pixels):
                x = image.to(device=device, dtype=engine.dtype)
                halves.append(vae.encode(x).latent_dist.mean * scale)
            latents[i] = torch.cat(halves, dim=1)[0].float().cpu().numpy()
    masks: list[np.ndarray | None] = [None] * len(frames)
    for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        if box is None:
            continue
        with lap(timings, "parse", device):
            blend = engine.parser.blend_masks([frame], [box], blur=engine.mask_blur, batch_size=1)
            masks[i] = mask_over_box(
                blend[0].mask, blend[0].crop_box, (box.x1, box.y1, box.x2, box.y2)
            )
    return {"boxes": boxes, "latents": latents, "masks": masks}, timings


def agreement(prepared: Any, reference: dict[str, Any]) -> dict[str, Any]:
    """How far the batched result differs from the per-frame one (same models, same frames)."""
    ref_face = np.array([b is not None for b in reference["boxes"]])
    both = np.flatnonzero(ref_face & prepared.has_face)
    ref_boxes = np.array(
        [(b.x1, b.y1, b.x2, b.y2) if b is not None else (0, 0, 0, 0) for b in reference["boxes"]]
    )
    same_masks = sum(
        1
        for i in both
        if reference["masks"][i] is not None
        and np.array_equal(reference["masks"][i], prepared.masks[i])
    )
    mask_diff = max(
        (
            int(np.abs(reference["masks"][i].astype(int) - prepared.masks[i].astype(int)).max())
            for i in both
            if reference["masks"][i] is not None
            and reference["masks"][i].shape == prepared.masks[i].shape
            and reference["masks"][i].size
        ),
        default=0,
    )
    return {
        "faces_batched": int(prepared.has_face.sum()),
        "faces_per_frame": int(ref_face.sum()),
        "same_face_frames": bool(np.array_equal(ref_face, prepared.has_face)),
        "boxes_max_abs_diff": int(np.abs(ref_boxes[both] - prepared.boxes[both]).max())
        if len(both)
        else 0,
        "latents_max_abs_diff": float(
            np.abs(reference["latents"][both] - prepared.latents[both]).max()
        )
        if len(both)
        else 0.0,
        "masks_identical": f"{same_masks}/{len(both)}",
        "masks_max_abs_diff": mask_diff,
    }


def per_frame_ms(timings: dict[str, float], frames: int) -> dict[str, float]:
    return {stage: round(timings.get(stage, 0.0) / frames, 3) for stage in STAGES}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="written here if missing")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--scale", type=float, default=1.0, help="downscale the avatar frames")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="CPU check: tiny VAE, 2 small frames")
    parser.add_argument("--out", type=Path, help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.scale = min(args.seconds, 2 / 25), min(args.scale, 0.25)
    device = torch.device(args.device)
    write_models(args.models, tiny_vae=args.smoke)
    engine = MuseTalkEngine.load(args.models, device)
    say(f"weights written and loaded on {device}")
    frames = round(args.seconds * 25)
    with tempfile.TemporaryDirectory() as tmp:
        avatar = write_avatar(Path(tmp) / "avatar.mp4", frames=frames, scale=args.scale)
        warm_frames = min(WARMUP_FRAMES, frames)
        warm = write_avatar(Path(tmp) / "warm.mp4", frames=warm_frames, scale=args.scale)
        batched(engine, warm)  # allocator, cuDNN and mmpose first-call costs, both paths
        per_frame(engine, warm)
        say(f"warmed up; preparing {frames} frames batched")
        prepared, ours, total_batched = batched(engine, avatar)
        say(f"batched: {total_batched:.1f} s; now per frame")
        synchronize(device)
        start = time.perf_counter()
        reference, theirs = per_frame(engine, avatar)
        total_per_frame = time.perf_counter() - start
    height, width = prepared.frames.shape[1:3]
    result = {
        "benchmark": "prepare",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": device_name(device),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "weights": "random: full-size VAE + S3FD/DWPose/BiSeNet"
        if not args.smoke
        else "random: tiny VAE, full-size S3FD/DWPose/BiSeNet",
        "vae_dtype": str(engine.dtype).removeprefix("torch."),
        "face_models_dtype": "float32",
        "avatar": {"frames": frames, "width": width, "height": height, "fps": prepared.fps},
        "batched_ms_per_frame": per_frame_ms(ours, frames),
        "per_frame_ms_per_frame": per_frame_ms(theirs, frames),
        "batched_total_s": round(total_batched, 2),
        "per_frame_total_s": round(total_per_frame, 2),
        "speedup": round(total_per_frame / total_batched, 2),
        "agreement": agreement(prepared, reference),
    }
    print(f"prepare benchmark: {frames} frames {width}x{height}, {result['device']}")
    print(f"{'stage (ms/frame)':<18}{'batched':>10}{'per-frame':>11}")
    for stage in STAGES:
        a, b = result["batched_ms_per_frame"][stage], result["per_frame_ms_per_frame"][stage]
        print(f"{stage:<18}{a:>10.2f}{b:>11.2f}")
    print(f"{'total (s)':<18}{total_batched:>10.2f}{total_per_frame:>11.2f}")
    print(f"speed-up (per-frame / batched): {result['speedup']}x")
    print("agreement:", json.dumps(result["agreement"]))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
