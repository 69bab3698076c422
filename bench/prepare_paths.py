"""The paths the preparation benchmark times: ours (`engine.prepare` in a variant's mode and
ops) and the official per-frame order, each timed per stage and recording what the face models
answered so the agreement report can compare them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.engine.avatar_preparation import PREPARE_CHUNK_FRAMES
from runtime.engine.avatar_reader import decode_avatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.faces.boxes import FaceBox, landmark_box, overlaps_frame, with_extra_margin
from runtime.engine.frame_compose import crop_face, mask_over_box
from runtime.engine.latents import crops_to_pixels, mask_lower_half
from runtime.engine.options import AvatarOptions


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


@dataclass
class Recorded:
    """What the face models answered, in frame order (S3FD boxes, DWPose landmarks)."""

    detections: list[Any] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)


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
    device = engine.device
    timings: dict[str, float] = {}
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
        found = with_extra_margin(
            landmark_box(lm, detected, bbox_shift=0), extra_margin=10, frame_height=height
        )
        boxes.append(found if overlaps_frame(found, width, height) else None)
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
