"""Preparation benchmark: our `MuseTalkEngine.prepare` against a per-frame path shaped like the
official code, on the same avatar and the same random weights, in one run.

The avatar is the sample video (`examples/media/yongen.mp4`, 1216x704 at 25 fps) looped to
`--seconds` (30 s = 750 frames by default). Every path decodes it the same way (PyAV), then

* **ours**, in one or more `--variants` `MODE:DTYPE[:OPS][+FLAG...]`: MODE `pipelined` (chunks
  of frames through locate / encode / parse stages overlapped on threads and CUDA streams,
  `preparing.py`), `sequential` (the same chunks, stage after stage: per-stage times that do
  not overlap) or `serial` (the default on CUDA: stage after stage on one stream, the
  decoding on its own thread ahead of them); DTYPE the face models' (S3FD, DWPose, BiSeNet;
  the VAE is the engine's); OPS `device` (each chunk uploaded once; the models' pre- and
  post-processing as batched tensor work there, the default on CUDA) or `host`
  (OpenCV/PIL/mmpose per image, the default on CPU);
  FLAGs `onepass` (DWPose's crops and mirror as one batch), `vae` (the VAE encoder
  channels-last in fixed batches), `compile` (S3FD and the VAE encoder compiled; the
  variant's warm-up time includes the compilation), see `configure`;
* **per-frame** (the official order, `scripts/realtime_inference.py` preparation, fp32 face
  models as upstream): for each frame DWPose then S3FD on that one frame, then for each frame
  the crop and two VAE encodes (masked, then reference) of batch 1, then for each frame its
  BiSeNet parse and mask.

It prints per-stage ms/frame, total seconds, the speed-up of each variant over the per-frame
path, and how far each variant's results agree with it: S3FD boxes, DWPose landmarks, the face
boxes, the 256 crops where boxes differ, latents, masks. In `pipelined` variants the stage
times overlap (each is that stage's busy time); their sum exceeds the total. Weights:
full-size random VAE and face models (`make-weights`' writers); the UNet and Whisper are written
tiny because preparation does not run them. `--smoke` is a CPU check of the script itself:
tiny VAE, a downscaled 2-frame clip, fp32.

    python bench/prepare.py --models /tmp/prep-models --out result.json       # GPU
    python bench/prepare.py --models /tmp/prep-models --variants \
        pipelined:float32:device,pipelined:float32:host --profile prof/     # + thread samples
    python bench/prepare.py --smoke --models /tmp/prep-tiny --out smoke.json   # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch

from runtime.engine import aot, aot_build, aot_prepare
from runtime.engine.avatar_preparation import PREPARE_CHUNK_FRAMES
from runtime.engine.avatar_reader import decode_avatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.faces import FaceLocator, FaceParser
from runtime.engine.faces.boxes import FaceBox, landmark_box, overlaps_frame, with_extra_margin
from runtime.engine.faces.locator import LOCATE_BATCH
from runtime.engine.faces.precision import default_face_dtype
from runtime.engine.faces.random_weights import (
    write_random_bisenet,
    write_random_dwpose,
    write_random_s3fd,
)
from runtime.engine.frame_compose import crop_face, mask_over_box
from runtime.engine.latents import crops_to_pixels, mask_lower_half
from runtime.engine.layout import ModelsLayout
from runtime.engine.options import AvatarOptions
from runtime.engine.random_weights import _write_unet, _write_vae, _write_whisper

MEDIA = Path(__file__).resolve().parents[1] / "examples" / "media"
STAGES = ("decode", "decode_wait", "locate", "s3fd", "dwpose", "crop", "vae_encode", "parse")
WARMUP_FRAMES = 8


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


class Recorded:
    """What the face models answered, in frame order (S3FD boxes, DWPose landmarks)."""

    def __init__(self) -> None:  # not a dataclass: the tests load this script without a module
        self.detections: list[Any] = []
        self.landmarks: list[np.ndarray] = []


@contextmanager
def recording(
    locator: Any, timings: dict[str, float] | None, device: torch.device
) -> Iterator[Recorded]:
    """Record the locator's answers; with `timings`, also time S3FD and DWPose apart (that
    synchronizes the device, so only for paths whose stages do not overlap)."""
    record = Recorded()

    def recorded(model: Any, method: str, stage: str, into: list[Any]) -> None:
        original = getattr(model, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            if timings is None:
                answer = original(*args, **kwargs)
            else:
                with lap(timings, stage, device):
                    answer = original(*args, **kwargs)
            into.extend(answer)
            return answer

        setattr(model, method, call)

    # the host-frame methods and the device-tensor ones (`device_ops`)
    for method in ("detect", "detect_on_device"):
        recorded(locator.detector, method, "s3fd", record.detections)
    for method in ("face_landmarks", "face_landmarks_on_device"):
        recorded(locator.landmarker, method, "dwpose", record.landmarks)
    try:
        yield record
    finally:
        for model in (locator.detector, locator.landmarker):  # the class's methods again
            for method in (
                "detect",
                "detect_on_device",
                "face_landmarks",
                "face_landmarks_on_device",
            ):
                model.__dict__.pop(method, None)


def ours(
    engine: MuseTalkEngine, avatar: Path, mode: str, ops: str = "host"
) -> tuple[Any, dict[str, float], float, Recorded]:
    """`engine.prepare` in `mode` with the face models' pre/post-processing `ops` ("host":
    OpenCV/PIL/mmpose per image; "device": batched tensor work on the device); a sequential or
    serial run also splits `locate` into S3FD and DWPose."""
    overlap = mode == "pipelined"
    chunk = PREPARE_CHUNK_FRAMES if engine.device.type == "cuda" else None
    timings: dict[str, float] = {}
    with recording(engine.locator, None if overlap else timings, engine.device) as record:
        synchronize(engine.device)
        start = time.perf_counter()
        prepared = engine.prepare(
            avatar,
            AvatarOptions(),
            overlap=overlap,
            chunk_frames=chunk,
            device_ops=ops == "device",
            decode_ahead=mode == "serial",
        )
        synchronize(engine.device)
        total = time.perf_counter() - start
    stages = dict(prepared.timings_ms)
    stages.pop("total", None)
    if not overlap:
        stages.pop("locate", None)
    stages.update(timings)
    return prepared, stages, total, record


@torch.inference_mode()
def per_frame(
    engine: MuseTalkEngine, locator: Any, parser: Any, avatar: Path
) -> tuple[dict[str, Any], dict[str, float], Recorded]:
    """The official preparation order, one frame at a time per model, with fp32 face models."""
    device, timings = engine.device, {}
    with lap(timings, "decode", device):
        frames = decode_avatar(avatar, still_fps=25).frames
    boxes: list[FaceBox | None] = []
    record = Recorded()
    for frame in frames:
        with lap(timings, "dwpose", device):
            lm = locator.landmarker.face_landmarks([frame], batch_size=1)[0]
        with lap(timings, "s3fd", device):
            detected = locator.detector.detect([frame], batch_size=1)[0]
        record.detections.append(detected)
        if detected is None:
            boxes.append(None)
            continue
        record.landmarks.append(lm)
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
            blend = parser.blend_masks([frame], [box], blur=AvatarOptions().mask_blur, batch_size=1)
            masks[i] = mask_over_box(
                blend[0].mask, blend[0].crop_box, (box.x1, box.y1, box.x2, box.y2)
            )
    result = {"boxes": boxes, "latents": latents, "masks": masks}
    return result, timings, record


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


def agreement(
    prepared: Any, reference: dict[str, Any], ours_seen: Recorded, theirs_seen: Recorded
) -> dict[str, Any]:
    """How far a variant's result differs from the per-frame one (same weights, same frames)."""
    ref_face = np.array([b is not None for b in reference["boxes"]])
    both = np.flatnonzero(ref_face & prepared.has_face)
    ref_boxes = np.array(
        [(b.x1, b.y1, b.x2, b.y2) if b is not None else (0, 0, 0, 0) for b in reference["boxes"]]
    )
    box_diff = np.abs(ref_boxes[both] - prepared.boxes[both]).max(axis=1)
    moved = both[box_diff > 0]
    crop_diffs = [
        np.abs(
            crop_face(prepared.frames[i], ref_boxes[i]).astype(int)
            - crop_face(prepared.frames[i], prepared.boxes[i]).astype(int)
        )
        for i in moved
    ]
    detected = [
        (a, b)
        for a, b in zip(ours_seen.detections, theirs_seen.detections, strict=True)
        if a is not None and b is not None
    ]
    det_diff = [int(np.abs(np.subtract(a, b)).max()) for a, b in detected]
    ours_lm, theirs_lm = np.array(ours_seen.landmarks), np.array(theirs_seen.landmarks)
    same_masks, mask_max, mask_mean = 0, 0, []
    for i in both:
        theirs_mask, ours_mask = reference["masks"][i], prepared.masks[i]
        if theirs_mask is None or theirs_mask.shape != ours_mask.shape:
            continue
        same_masks += int(np.array_equal(theirs_mask, ours_mask))
        if theirs_mask.size:
            diff = np.abs(theirs_mask.astype(int) - ours_mask.astype(int))
            mask_max = max(mask_max, int(diff.max()))
            mask_mean.append(float(diff.mean()))
    latent_diff = np.abs(reference["latents"][both] - prepared.latents[both])
    return {
        "faces": int(prepared.has_face.sum()),
        "faces_per_frame": int(ref_face.sum()),
        "same_face_frames": bool(np.array_equal(ref_face, prepared.has_face)),
        "s3fd_boxes_max_abs_diff_px": max(det_diff, default=0),
        "s3fd_boxes_differing": f"{sum(d > 0 for d in det_diff)}/{len(det_diff)}",
        "landmarks_max_abs_diff_px": _max_abs(ours_lm, theirs_lm)
        if ours_lm.shape == theirs_lm.shape
        else None,
        "boxes_max_abs_diff_px": int(box_diff.max()) if len(both) else 0,
        "boxes_differing": f"{len(moved)}/{len(both)}",
        "moved_crops_max_abs_diff": max((int(d.max()) for d in crop_diffs), default=0),
        "moved_crops_mean_abs_diff": round(float(np.mean([d.mean() for d in crop_diffs])), 3)
        if crop_diffs
        else 0.0,
        "latents_max_abs_diff": float(latent_diff.max()) if len(both) else 0.0,
        "latents_mean_abs_diff": float(latent_diff.mean()) if len(both) else 0.0,
        "masks_identical": f"{same_masks}/{len(both)}",
        "masks_max_abs_diff": mask_max,
        "masks_mean_abs_diff": round(float(np.mean(mask_mean)), 4) if mask_mean else 0.0,
    }


def per_frame_ms(timings: dict[str, float], frames: int) -> dict[str, float]:
    return {stage: round(timings.get(stage, 0.0) / frames, 3) for stage in STAGES}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


MODES = ("pipelined", "sequential", "serial")
# +FLAG switches of a variant (see `configure`)
FLAGS = ("onepass", "vae", "compile", "aot")


def parse_variant(text: str) -> tuple[str, torch.dtype, str, frozenset[str]]:
    spec, *flags = text.split("+")
    mode, dtype, ops = [*spec.split(":"), "device"][:3]
    if (
        mode not in MODES
        or dtype not in ("float32", "float16", "bfloat16")
        or ops not in ("host", "device")
        or any(flag not in FLAGS for flag in flags)
    ):
        raise argparse.ArgumentTypeError(
            f"variant {text!r}: MODE:DTYPE[:OPS][+FLAG...], e.g. serial:float16:device+onepass; "
            f"MODE one of {', '.join(MODES)}, FLAG one of {', '.join(FLAGS)}"
        )
    return mode, getattr(torch, dtype), ops, frozenset(flags)


def variant_name(
    mode: str, dtype: torch.dtype, ops: str, flags: frozenset[str] = frozenset()
) -> str:
    name = f"{mode}:{str(dtype).removeprefix('torch.')}:{ops}"
    return name + "".join(f"+{flag}" for flag in FLAGS if flag in flags)


def configure(
    engine: MuseTalkEngine,
    flags: frozenset[str],
    compiled: dict[Any, Any],
    packages: Callable[[], tuple[Path, ModelsLayout]] | None = None,
) -> None:
    """Set the engine's models as a variant's flags say (each flag off unless named):
    `onepass` DWPose's crops and their mirror as one batch; `vae` the VAE encoder
    channels-last in fixed batches of a chunk's frames; `compile` S3FD and the VAE encoder
    through torch.compile (Inductor, default mode, as `MuseTalkEngine.compile_preparation`),
    compiled once per model (`compiled` keeps them) on the variant's warm-up. (cuDNN's
    autotuner is on in every CUDA preparation since the 2026-11-26 fast run, where it was a
    flag: DWPose 1.7 -> 0.7 ms/frame.) `aot`: S3FD and the VAE encoder from AOT packages
    (`aot_prepare`, what a worker without a compiler loads) that `packages()` builds for the
    avatar's frame size."""
    detector, landmarker = engine.locator.detector, engine.locator.landmarker
    detector.packaged = {}
    landmarker.flip_in_one_batch = "onepass" in flags
    fixed = "vae" in flags or "compile" in flags
    backend = "inductor" if engine.device.type == "cuda" else "eager"  # CPU smoke: Dynamo only
    engine.codec.tune_encoder(
        channels_last=fixed,
        batch=(PREPARE_CHUNK_FRAMES if engine.device.type == "cuda" else 1) if fixed else None,
        compile_backend=backend if "compile" in flags else None,
    )
    if "compile" in flags:
        if id(detector) not in compiled:
            detector.compile(backend=backend)
            compiled[id(detector)] = detector.run_net
        detector.run_net = compiled[id(detector)]
    else:
        detector.run_net = detector.net
    if "aot" in flags and packages is not None:
        directory, layout = packages()
        engine.prepare_packages_ms = aot_prepare.attach(
            directory, engine.codec, detector, layout, engine.device
        )


def prepare_packages(
    engine: MuseTalkEngine, models: Path, frame_size: tuple[int, int], face_dtype: torch.dtype
) -> tuple[Path, dict[str, float]]:
    """Preparation's AOT packages for this frame size and face dtype in a new directory (as
    `build-artifacts` builds them beside the speak packages), and the build's seconds."""
    directory = Path(tempfile.mkdtemp(prefix="prepare-aot-"))
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    spec = aot_prepare.PrepareSpec(face_dtype, PREPARE_CHUNK_FRAMES, LOCATE_BATCH, (frame_size,))
    section = aot_prepare.build(
        directory,
        ModelsLayout(models),
        engine.device,
        engine.dtype,
        spec,
        lambda module, inputs, path: aot_build.package_model(module, inputs, path, {}, seconds),
    )
    (directory / aot.MANIFEST).write_text(json.dumps({"prepare": section}))
    seconds["total"] = round(time.perf_counter() - start, 1)
    return directory, seconds


# Innermost frames of a thread that waits for work or for another thread: not sampled.
_IDLE = ("threading.py:wait", "thread.py:_worker", "hashlib", "fileio.py:file_sha256")


class ThreadSampler:
    """Where each Python thread is, sampled every few milliseconds (a poor man's `py-spy`):
    counts of (thread, innermost frame of ours or a library's) while a run is sampled."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        names = {}
        while not self._stop.wait(self.interval_s):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == self._thread.ident:
                    continue
                stack = []
                while frame is not None and len(stack) < 3:
                    code = frame.f_code
                    stack.append(f"{Path(code.co_filename).name}:{code.co_name}:{frame.f_lineno}")
                    frame = frame.f_back
                if any(idle in stack[0] for idle in _IDLE):
                    continue
                key = f"{names.get(ident, ident)} | " + " < ".join(stack)
                self.counts[key] = self.counts.get(key, 0) + 1

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def top(self, n: int = 60) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda kv: -kv[1])[:n]


def profile(engine: MuseTalkEngine, avatar: Path, mode: str, ops: str, out: Path) -> None:
    """One preparation of `avatar` in `mode` under torch.profiler and the thread sampler:
    the top operators by host and by GPU time and the threads' most sampled lines, to `out`."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU]
    if engine.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with ThreadSampler() as sampler:
        ours(engine, avatar, mode, ops)
    with torch_profile(activities=activities) as prof:
        ours(engine, avatar, mode, ops)
    lines = [f"# {mode}, {ops} ops: thread samples (5 ms), most frequent first"]
    lines += [f"{count:6d}  {key}" for key, count in sampler.top()]
    for sort in ("self_cpu_time_total", "self_device_time_total"):
        lines += ["", f"# torch.profiler, sorted by {sort}"]
        try:
            lines.append(prof.key_averages().table(sort_by=sort, row_limit=30))
        except Exception as error:  # a sort key this build lacks
            lines.append(f"({error})")
    out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="written here if missing")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--scale", type=float, default=1.0, help="downscale the avatar frames")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--variants",
        type=lambda text: [parse_variant(v) for v in text.split(",")],
        help="MODE:DTYPE[:OPS][+FLAG...],... (default: serial and pipelined, default dtype/ops)",
    )
    parser.add_argument("--smoke", action="store_true", help="CPU check: tiny VAE, 2 small frames")
    parser.add_argument(
        "--profile", type=Path, help="profile the last variant on the warm-up clip, into this dir"
    )
    parser.add_argument("--out", type=Path, help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.scale = min(args.seconds, 2 / 25), min(args.scale, 0.25)
    device = torch.device(args.device)
    default_ops = "device" if device.type == "cuda" else "host"
    variants = args.variants or [
        (mode, default_face_dtype(device), default_ops, frozenset())
        for mode in ("serial", "pipelined")
    ]
    write_models(args.models, tiny_vae=args.smoke)
    engine = MuseTalkEngine.load(args.models, device)
    faces: dict[torch.dtype, tuple[Any, Any]] = {}
    for dtype in {torch.float32, *(dtype for _, dtype, _, _ in variants)}:
        faces[dtype] = (
            FaceLocator.load(args.models, device, dtype),
            FaceParser.load(args.models, device, dtype),
        )
    say(f"weights written and loaded on {device}")
    frames = round(args.seconds * 25)
    result: dict[str, Any] = {
        "benchmark": "prepare",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": device_name(device),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "weights": "random: full-size VAE + S3FD/DWPose/BiSeNet"
        if not args.smoke
        else "random: tiny VAE, full-size S3FD/DWPose/BiSeNet",
        "vae_dtype": str(engine.dtype).removeprefix("torch."),
        "avatar": {"frames": frames},
        "variants": {},
        "failed": {},
    }

    def save() -> None:  # after each path: a run cut short keeps what it measured
        if args.out is not None:
            args.out.write_text(json.dumps(result, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        avatar = write_avatar(Path(tmp) / "avatar.mp4", frames=frames, scale=args.scale)
        warm_frames = min(WARMUP_FRAMES * 4, frames)
        warm = write_avatar(Path(tmp) / "warm.mp4", frames=warm_frames, scale=args.scale)
        # The baseline first, after a warm-up (allocator, cuDNN autotuning, mmpose first calls).
        per_frame(engine, *faces[torch.float32], warm)
        say(f"preparing {frames} frames per frame")
        synchronize(device)
        start = time.perf_counter()
        reference, theirs, theirs_seen = per_frame(engine, *faces[torch.float32], avatar)
        total_per_frame = time.perf_counter() - start
        result["per_frame"] = {
            "face_models_dtype": "float32",
            "ms_per_frame": per_frame_ms(theirs, frames),
            "total_s": round(total_per_frame, 2),
        }
        say(f"per frame: {total_per_frame:.2f} s")
        save()
        compiled: dict[Any, Any] = {}
        built: dict[torch.dtype, tuple[Path, dict[str, float]]] = {}
        height, width = decode_avatar(warm, still_fps=25).frames[0].shape[:2]
        start = time.perf_counter()
        decode_avatar(avatar, still_fps=25)  # with no other thread: what the decoding costs
        result["decode_alone_s"] = round(time.perf_counter() - start, 3)

        def packages_for(dtype: torch.dtype) -> Callable[[], tuple[Path, ModelsLayout]]:
            def packages() -> tuple[Path, ModelsLayout]:
                if dtype not in built:
                    say(f"building preparation's AOT packages for {height}x{width}, {dtype}")
                    built[dtype] = prepare_packages(engine, args.models, (height, width), dtype)
                return built[dtype][0], ModelsLayout(args.models)

            return packages

        for mode, dtype, ops, flags in variants:
            name = variant_name(mode, dtype, ops, flags)
            engine.locator, engine.parser = faces[dtype]
            try:
                # each variant warmed up first; a compiled one compiles here (its warm-up time)
                start = time.perf_counter()
                configure(engine, flags, compiled, packages_for(dtype))
                ours(engine, warm, mode, ops)
                warmup_s = time.perf_counter() - start
                say(f"{name}: warm-up ({warm_frames} frames) {warmup_s:.1f} s")
                prepared, stages, total, seen = ours(engine, avatar, mode, ops)
            except Exception as error:  # one variant's failure (a compiler's) ends only it
                result["failed"][name] = f"{type(error).__name__}: {error}"[:500]
                say(f"{name} failed: {result['failed'][name]}")
                continue
            height, width = prepared.frames.shape[1:3]
            result["avatar"].update(width=width, height=height, fps=prepared.fps)
            result["variants"][name] = {
                "ms_per_frame": per_frame_ms(stages, frames),
                "warmup_s": round(warmup_s, 2),
                "total_s": round(total, 2),
                "speedup": round(total_per_frame / total, 2),
                "agreement": agreement(prepared, reference, seen, theirs_seen),
            }
            if "aot" in flags:
                result["variants"][name]["aot_build_s"] = built[dtype][1]
                result["variants"][name]["aot_load_ms"] = _rounded(engine.prepare_packages_ms)
            del prepared
            say(f"{name}: {total:.2f} s, {result['variants'][name]['speedup']}x")
            save()
        if args.profile is not None and result["variants"]:
            args.profile.mkdir(parents=True, exist_ok=True)
            mode, dtype, ops, flags = next(
                v for v in reversed(variants) if variant_name(*v) in result["variants"]
            )
            engine.locator, engine.parser = faces[dtype]
            configure(engine, flags, compiled, packages_for(dtype))
            say(f"profiling {warm_frames} frames, {variant_name(mode, dtype, ops, flags)}")
            profile(engine, warm, mode, ops, args.profile / "profile.txt")
    print_report(result)
    save()
    return result


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {name: round(ms, 1) for name, ms in timings.items()}


def print_report(result: dict[str, Any]) -> None:
    avatar, names = result["avatar"], list(result["variants"])
    print(
        f"prepare benchmark: {avatar['frames']} frames {avatar.get('width')}x"
        f"{avatar.get('height')}, {result['device']}"
    )
    print(f"{'stage (ms/frame)':<18}" + "".join(f"{n:>20}" for n in names) + f"{'per-frame':>12}")
    for stage in STAGES:
        row = [result["variants"][n]["ms_per_frame"][stage] for n in names]
        theirs_ms = result["per_frame"]["ms_per_frame"][stage]
        print(f"{stage:<18}" + "".join(f"{v:>20.2f}" for v in row) + f"{theirs_ms:>12.2f}")
    totals = [result["variants"][n]["total_s"] for n in names]
    print(
        f"{'total (s)':<18}"
        + "".join(f"{v:>20.2f}" for v in totals)
        + f"{result['per_frame']['total_s']:>12.2f}"
    )
    for name in names:
        variant = result["variants"][name]
        print(
            f"{name}: speed-up {variant['speedup']}x, warm-up {variant['warmup_s']} s; agreement",
            json.dumps(variant["agreement"]),
        )
    for name, error in result["failed"].items():
        print(f"{name}: FAILED {error}")


if __name__ == "__main__":
    main()
