"""Side by side with the official MuseTalk code: the same random weights and inputs through the
official implementation's functions and through ours, with the difference printed per stage.

    python bench/official_compare.py --official /path/to/MuseTalk --models /tmp/tiny-models \
        [--frames 2] [--scale 0.25] [--out bench/results/official-compare.md]

`--official` is a checkout of TMElyralab/MuseTalk (read only: it is copied to a temporary
workspace, where the S3FD weights are placed where its detector looks for them and `models/`
points at `--models`). `--models` is our `make-weights` output in the official layout (`--tiny`
is fine: the face models are always full size). Runs on CPU in fp32.

The official code is imported, not re-typed, except where it only exists inline in a script:
the crop (two lines of `scripts/inference.py`) and the glue between stages (batching, `y2`
margin), which this file mirrors line by line. Shims, registered only here and only when the
real package is missing: `torchvision.transforms` (ToTensor, Normalize, Compose), `einops.
rearrange` (the one pattern the audio code uses) and `librosa.load` (our PyAV + soxr loader, so
audio loading is NOT compared, only everything after it). mmpose's `init_model` is wrapped to
drop the config's `_scope_='mmdet'` backbone scope (mmdet needs compiled mmcv ops; mmpose's own
CSPNeXt has the same parameters). Nothing here is used by the engine or the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from runtime.engine.audio import AudioEncoder, load_audio_16k, positional_encoding
from runtime.engine.avatar_reader import decode_avatar
from runtime.engine.blend import PasteBox, paste_faces
from runtime.engine.engine import crop_face, mask_over_box
from runtime.engine.faces import FaceBox, FaceLocator, FaceParser
from runtime.engine.faces.boxes import landmark_box, with_extra_margin
from runtime.engine.faces.mmlab_compat import import_mmpose
from runtime.engine.latents import Generator, LatentCodec
from runtime.engine.layout import ModelsLayout

MEDIA = Path(__file__).resolve().parents[1] / "examples" / "media"
EXTRA_MARGIN = 10  # v1.5 default of both scripts
CHEEK_WIDTH = 90  # both v1.5 scripts pass 90
# 0 (v1.5), the README's -7, realtime.yaml's 5; -300 reaches the y1 = 0 clamp on the synthetic
# face, +200 pushes landmark 29 below the chin, which sends the rule to its S3FD fallback.
BBOX_SHIFTS = (0, -7, 5, -300, 200)


# ---------------------------------------------------------------- shims for the official imports


def _module(name: str, **attributes: Any) -> types.ModuleType:
    import importlib.machinery

    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    module.__dict__.update(attributes)
    return module


def _shim_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for packages the official modules import but this environment lacks."""

    class ToTensor:
        def __call__(self, image: Any) -> torch.Tensor:
            array = np.asarray(image, dtype=np.uint8)
            return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0

    class Normalize:
        def __init__(self, mean: Any, std: Any) -> None:
            self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
            self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return (x - self.mean) / self.std

    class Compose:
        def __init__(self, steps: list[Callable[[Any], Any]]) -> None:
            self.steps = steps

        def __call__(self, x: Any) -> Any:
            for step in self.steps:
                x = step(x)
            return x

    def rearrange(x: torch.Tensor, pattern: str) -> torch.Tensor:
        if pattern != "b c h w -> b (c h) w":
            raise NotImplementedError(pattern)
        return x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3])

    def load(path: str, sr: int) -> tuple[np.ndarray, int]:
        if sr != 16000:
            raise NotImplementedError(sr)
        return load_audio_16k(Path(path)), sr

    transforms = _module(
        "torchvision.transforms", ToTensor=ToTensor, Normalize=Normalize, Compose=Compose
    )
    return {
        "torchvision": _module("torchvision", transforms=transforms),
        "torchvision.transforms": transforms,
        "einops": _module("einops", rearrange=rearrange),
        "librosa": _module("librosa", load=load),
    }


@contextlib.contextmanager
def official_imports() -> Iterator[None]:
    """Shims registered only while the official modules import (and only for packages that are
    missing), then removed, so transformers and mmpose never see them."""
    import importlib.util

    shims = _shim_modules()
    missing = {
        name.split(".")[0]
        for name in shims
        if name.split(".")[0] not in sys.modules
        and importlib.util.find_spec(name.split(".")[0]) is None
    }
    added = [name for name in shims if name.split(".")[0] in missing]
    sys.modules.update({name: shims[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _wrap_init_model() -> None:
    """mmpose's init_model without the config's mmdet backbone scope (see the module doc)."""
    import_mmpose()  # our torchvision / mmcv.ops stand-ins for mmpose's own imports
    from mmengine.config import Config
    from mmpose import apis

    real_init_model = apis.init_model

    def init_model(config: Any, checkpoint: Any = None, device: Any = "cpu", **kw: Any) -> Any:
        cfg = Config.fromfile(config) if isinstance(config, str) else config
        cfg.model.backbone.pop("_scope_", None)
        return real_init_model(cfg, checkpoint, device=str(device), **kw)

    apis.init_model = init_model


@contextlib.contextmanager
def official_workspace(official: Path, models: Path) -> Iterator[Path]:
    """A temporary copy of the official package, cwd set there (its paths are cwd-relative)."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="musetalk-official-") as tmp:
        root = Path(tmp)
        shutil.copytree(official / "musetalk", root / "musetalk")
        (root / "models").symlink_to(models.resolve())
        sfd = root / "musetalk" / "utils" / "face_detection" / "detection" / "sfd"
        shutil.copy(ModelsLayout(models).s3fd, sfd / "s3fd.pth")
        sys.path[:0] = [str(root), str(root / "musetalk" / "utils")]
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(previous)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The official code prints progress bars and banners; keep the table readable."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# ---------------------------------------------------------------- measures


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, stage: str, what: str, ours: Any, theirs: Any, peak: float = 255.0) -> None:
        a, b = np.asarray(ours), np.asarray(theirs)
        if a.shape != b.shape:
            self.rows.append((stage, what, f"shape {a.shape} vs {b.shape}", "-", "DIFFERENT"))
            return
        diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0
        quality = psnr(a, b, peak) if a.size else math.inf
        verdict = "identical" if diff == 0 else ("close" if quality > 60 else "DIFFERENT")
        shown = "inf" if math.isinf(quality) else f"{quality:.1f}"
        self.rows.append((stage, what, f"{diff:.3g}", shown, verdict))

    def note(self, stage: str, what: str, verdict: str) -> None:
        self.rows.append((stage, what, "-", "-", verdict))

    def markdown(self) -> str:
        lines = [
            "| stage | compared | max abs diff | PSNR (dB) | verdict |",
            "|---|---|---|---|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


# ---------------------------------------------------------------- inputs


def synthetic_landmarks(width: int, height: int) -> np.ndarray:
    """68 iBUG-ordered points of a plausible frontal face in the upper middle of the frame."""
    cx, cy, r = width / 2, height * 0.33, width * 0.14
    jaw = [(cx + r * math.cos(a), cy + 1.2 * r * math.sin(a)) for a in np.linspace(0, math.pi, 17)]
    brows = [(cx - r * 0.8 + i * r * 0.18, cy - r * 0.55) for i in range(10)]
    bridge = [(cx, cy - r * 0.45 + i * r * 0.17) for i in range(4)]  # 27..30
    nostrils = [(cx - r * 0.2 + i * r * 0.1, cy + r * 0.2) for i in range(5)]
    eyes = [(cx + s * r * (0.25 + 0.05 * i), cy - r * 0.35) for s in (-1, 1) for i in range(6)]
    lips = [
        (cx + r * 0.4 * math.cos(a), cy + r * 0.6 + r * 0.15 * math.sin(a))
        for a in np.linspace(0, 2 * math.pi, 20, endpoint=False)
    ]
    points = np.array(jaw[::-1] + brows + bridge + nostrils + eyes + lips, dtype=np.float32)
    assert points.shape == (68, 2)
    return points


def avatar_frames(count: int, scale: float) -> list[np.ndarray]:
    frames = decode_avatar(MEDIA / "yongen.mp4", still_fps=25).frames[:count]
    if scale == 1.0:
        return frames
    return [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames]


# ---------------------------------------------------------------- stages


def compare_faces(table: Table, models: Path, frames: list[np.ndarray], root: Path) -> None:
    """S3FD + DWPose models and the landmark box rule (spec §3.1-3.4), official vs ours."""
    from mmpose.structures import PoseDataSample

    with quiet(), official_imports():
        from musetalk.utils import preprocessing  # loads DWPose and S3FD at import
    seen: dict[str, list[Any]] = {"landmarks": [], "detections": []}
    topdown, detect = preprocessing.inference_topdown, preprocessing.fa.get_detections_for_batch

    def record_topdown(model: Any, image: np.ndarray) -> list[PoseDataSample]:
        results = topdown(model, image)
        seen["landmarks"].append(np.asarray(results[0].pred_instances.keypoints)[0][23:91])
        return results

    def record_detect(images: np.ndarray) -> list[Any]:
        found = detect(images)
        seen["detections"].extend(found)
        return found

    paths = []
    for i, frame in enumerate(frames):
        paths.append(str(root / f"{i:08d}.png"))
        cv2.imwrite(paths[-1], frame)
    preprocessing.inference_topdown, preprocessing.fa.get_detections_for_batch = (
        record_topdown,
        record_detect,
    )
    try:
        with quiet():
            official_boxes, _ = preprocessing.get_landmark_and_bbox(paths, 0)
    finally:
        preprocessing.inference_topdown = topdown
        preprocessing.fa.get_detections_for_batch = detect
    locator = FaceLocator.load(models, torch.device("cpu"))
    ours_detections = locator.detector.detect(frames, batch_size=1)
    ours_landmarks = locator.landmarker.face_landmarks(frames, batch_size=len(frames))
    table.add(
        "DWPose (official config + inference_topdown)",
        "68 face landmarks (float, before int32)",
        ours_landmarks,
        np.stack(seen["landmarks"]).astype(np.int32),
    )
    table.add(
        "S3FD (face_detection package)",
        "best box per frame (None = -1)",
        [d if d is not None else (-1,) * 4 for d in ours_detections],
        [tuple(int(v) for v in d) if d is not None else (-1,) * 4 for d in seen["detections"]],
    )
    ours_boxes = [
        landmark_box(lm, d, bbox_shift=0) if d is not None else (0, 0, 0, 0)
        for lm, d in zip(ours_landmarks, ours_detections, strict=True)
    ]
    table.add(
        "box rule on the models' output",
        "get_landmark_and_bbox boxes, bbox_shift 0",
        ours_boxes,
        [tuple(int(v) for v in b) for b in official_boxes],
    )
    # The rule's arithmetic on landmarks that look like a face (random DWPose weights scatter
    # their points, which sends every frame to the S3FD fallback).
    height, width = frames[0].shape[:2]
    face = synthetic_landmarks(width, height)
    detected = (int(width * 0.3), int(height * 0.2), int(width * 0.7), int(height * 0.5))
    keypoints = np.zeros((1, 133, 2), dtype=np.float32)
    keypoints[0, 23:91] = face

    def fixed_topdown(model: Any, image: np.ndarray) -> list[PoseDataSample]:
        from mmengine.structures import InstanceData

        sample = PoseDataSample()
        sample.pred_instances = InstanceData(keypoints=keypoints.copy())
        return [sample]

    preprocessing.inference_topdown = fixed_topdown
    preprocessing.fa.get_detections_for_batch = lambda images: [detected] * len(images)
    try:
        for shift in BBOX_SHIFTS:
            with quiet():
                boxes, _ = preprocessing.get_landmark_and_bbox(paths[:1], shift)
            x1, y1, x2, y2 = (int(v) for v in boxes[0])
            y2 = min(y2 + EXTRA_MARGIN, height)  # scripts/inference.py, v1.5
            ours = with_extra_margin(
                landmark_box(face.astype(np.int32), detected, bbox_shift=shift),
                extra_margin=EXTRA_MARGIN,
                frame_height=height,
            )
            table.add(
                "box rule + v1.5 margin",
                f"face-like landmarks, bbox_shift {shift:+d}",
                (ours.x1, ours.y1, ours.x2, ours.y2),
                (x1, y1, x2, y2),
            )
    finally:
        preprocessing.inference_topdown = topdown
        preprocessing.fa.get_detections_for_batch = detect


def face_box_for(frame: np.ndarray) -> FaceBox:
    """The v1.5 box of the face-like landmarks (what the landmark rule gives for them)."""
    height, width = frame.shape[:2]
    face = synthetic_landmarks(width, height).astype(np.int32)
    detected = (0, 0, width, height)
    return with_extra_margin(
        landmark_box(face, detected, bbox_shift=0),
        extra_margin=EXTRA_MARGIN,
        frame_height=height,
    )


def compare_generation(table: Table, models: Path, frames: list[np.ndarray], audio: Path) -> None:
    """Audio windows, crop, latents, UNet step, decode and blend (spec §2, §3.7, §4-6)."""
    from transformers import WhisperModel

    with official_imports():
        from musetalk.models.unet import PositionalEncoding, UNet
        from musetalk.models.vae import VAE
        from musetalk.utils.audio_processor import AudioProcessor
        from musetalk.utils.blending import get_image
        from musetalk.utils.face_parsing import FaceParsing

    cpu, layout = torch.device("cpu"), ModelsLayout(models)
    # --- audio features and per-frame windows
    processor = AudioProcessor(feature_extractor_path=str(layout.whisper_dir))
    whisper = WhisperModel.from_pretrained(str(layout.whisper_dir)).eval()
    with torch.no_grad(), quiet():
        features, length = processor.get_audio_feature(str(audio))
        official_tokens = processor.get_whisper_chunk(
            features, cpu, torch.float32, whisper, length, fps=25
        )
    ours_tokens = AudioEncoder(layout.whisper_dir, cpu, torch.float32).frame_tokens(
        load_audio_16k(audio), 25.0
    )
    table.add(
        "audio features + windows",
        f"[T, 50, 384] tokens of {audio.name} ({length / 16000:.1f} s)",
        ours_tokens.numpy(),
        official_tokens.numpy(),
        peak=float(official_tokens.abs().max()),
    )
    # --- crop (inline in scripts/inference.py: slice, then LANCZOS4 to 256)
    boxes = [face_box_for(frame) for frame in frames]
    official_crops = []
    for frame, box in zip(frames, boxes, strict=True):
        crop = frame[box.y1 : box.y2, box.x1 : box.x2]
        official_crops.append(cv2.resize(crop, (256, 256), interpolation=cv2.INTER_LANCZOS4))
    ours_crops = np.stack(
        [crop_face(f, (b.x1, b.y1, b.x2, b.y2)) for f, b in zip(frames, boxes, strict=True)]
    )
    table.add("crop 256x256", "LANCZOS4 crops", ours_crops, np.stack(official_crops))
    # --- latents: official samples the posterior; compare its mean too (our deviation 1)
    vae = VAE(model_path=str(layout.vae_dir), use_float16=False)
    codec = LatentCodec(layout.vae_dir, cpu, torch.float32)
    ours_latents = codec.encode_crops(ours_crops)
    torch.manual_seed(0)
    with torch.no_grad():
        sampled = torch.cat([vae.get_latents_for_unet(c) for c in official_crops])
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    sample = DiagonalGaussianDistribution.sample
    DiagonalGaussianDistribution.sample = DiagonalGaussianDistribution.mode  # type: ignore[method-assign]
    try:
        with torch.no_grad():
            official_latents = torch.cat([vae.get_latents_for_unet(c) for c in official_crops])
    finally:
        DiagonalGaussianDistribution.sample = sample  # type: ignore[method-assign]
    peak = float(official_latents.abs().max())
    table.add(
        "VAE latents",
        "[B, 8, 32, 32], official posterior mean",
        ours_latents,
        official_latents,
        peak,
    )
    table.add(
        "VAE latents",
        "official as shipped (posterior sample) vs our mean",
        ours_latents,
        sampled,
        peak,
    )
    # --- UNet step (t = 0) on the official latents and audio
    unet = UNet(str(layout.unet_config), str(layout.unet_weights), device=cpu)
    pe = PositionalEncoding(d_model=384)
    audio_batch = official_tokens[: len(frames)]
    with torch.no_grad():
        official_pred = unet.model(
            official_latents, torch.tensor([0]), encoder_hidden_states=pe(audio_batch)
        ).sample
    generator = Generator(layout.unet_config, layout.unet_weights, cpu, torch.float32)
    ours_pred = generator.step(official_latents, audio_batch + positional_encoding())
    peak = float(official_pred.abs().max())
    table.add("UNet step", "[B, 4, 32, 32] predicted latents", ours_pred, official_pred, peak)
    # --- decode to uint8 BGR faces
    with torch.no_grad():
        official_faces = vae.decode_latents(official_pred)  # [B, 256, 256, 3] BGR
    ours_faces_rgb = codec.decode(official_pred)  # [B, 3, 256, 256] RGB
    ours_faces = ours_faces_rgb.flip(1).permute(0, 2, 3, 1).numpy()
    table.add("VAE decode", "uint8 BGR faces", ours_faces, official_faces)
    # --- blend into the frame (offline get_image; our masks + device paste)
    parser = FaceParser.load(models, cpu)
    for mode in ("jaw", "raw"):
        with quiet():
            fp = FaceParsing(left_cheek_width=CHEEK_WIDTH, right_cheek_width=CHEEK_WIDTH)
        official_out, ours_out = [], []
        masks = parser.blend_masks(frames, boxes, mode=mode, blur="offline")
        for frame, box, face, blend in zip(frames, boxes, official_faces, masks, strict=True):
            resized = cv2.resize(face.astype(np.uint8), (box.x2 - box.x1, box.y2 - box.y1))
            with torch.no_grad():
                official_out.append(
                    get_image(
                        frame.copy(), resized, [box.x1, box.y1, box.x2, box.y2], mode=mode, fp=fp
                    )
                )
            height, width = frame.shape[:2]
            paste = PasteBox(box.x1, box.y1, box.x2, box.y2, width, height)
            vx1, vy1, vx2, vy2 = paste.visible
            mask = mask_over_box(blend.mask, blend.crop_box, (box.x1, box.y1, box.x2, box.y2))
            region = paste_faces(
                torch.from_numpy(np.ascontiguousarray(face.transpose(2, 0, 1)))[None],
                [torch.from_numpy(np.ascontiguousarray(frame[vy1:vy2, vx1:vx2]))],
                [torch.from_numpy(mask)],
                [paste],
            )[0]
            out = frame.copy()
            out[vy1:vy2, vx1:vx2] = region.numpy()
            ours_out.append(out)
        table.add(
            "blend (parse, mask, paste)",
            f"full output frames, mode {mode}",
            np.stack(ours_out),
            np.stack(official_out),
        )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="MuseTalk checkout")
    parser.add_argument("--models", type=Path, required=True, help="our make-weights output")
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--scale", type=float, default=0.25, help="frames for S3FD/DWPose")
    parser.add_argument("--audio", type=Path, default=MEDIA / "yongen.wav")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    official, models = args.official.resolve(), args.models.resolve()
    audio, out = args.audio.resolve(), args.out.resolve() if args.out else None
    torch.set_grad_enabled(False)
    import transformers  # noqa: F401  # before any shim exists: it probes optional packages

    _wrap_init_model()
    table = Table()
    with official_workspace(official, models) as root:
        compare_faces(table, models, avatar_frames(args.frames, args.scale), root)
        compare_generation(table, models, avatar_frames(args.frames, 1.0), audio)
    text = table.markdown()
    print(text)
    if out is not None:
        out.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
