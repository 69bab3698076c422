"""Upstream MuseTalk's realtime avatar preparation, run by its own code, as a baseline of the
preparation benchmark (`bench/prepare.py --official DIR`).

The checkout (TMElyralab/MuseTalk, read only, never copied into this repository) is copied to a
temporary workspace (`official_workspace`: its paths are cwd-relative, `models/` points at the
benchmark's weights, already in upstream's layout) and `scripts/realtime_inference.py` is
imported with its real `musetalk.utils.preprocessing`, which loads at import DWPose (mmpose
`init_model`) and S3FD (`FaceAlignment`, which also turns on `cudnn.benchmark`), on CUDA when
available, fp32. `Avatar(..., preparation=True)` then runs `prepare_material` on the benchmark's
clip: `video2imgs` (OpenCV decode, a PNG per frame), `get_landmark_and_bbox` (`read_imgs` of the
PNGs, then per frame mmpose `inference_topdown` and S3FD `get_detections_for_batch`), the v1.5
extra margin, per frame the LANCZOS4 crop and `vae.get_latents_for_unet` (two encodes of batch
1), the forward+reversed cycle, per cycle frame a PNG write, `get_image_prepare_material`
(BiSeNet `FaceParsing`, jaw mode) and a mask PNG write, then `pickle.dump` and `torch.save`.

The module globals are those its `__main__` sets for preparation: `args` (v15, extra margin 10,
parsing mode jaw, cheek widths 90), `device` (CUDA whenever available, as upstream's modules
choose for themselves), `vae`/`unet`/`pe` from `load_all_model`, halved on CUDA as `__main__`
halves them (kept fp32 on CPU, where upstream is not run in fp16), and `fp`. Whisper and the
audio processor are not loaded: preparation never calls them.

Each run prepares the clip's first `frames` frames (`video2imgs`' own `cut_frame`) under a
fresh avatar id in the workspace (an existing one makes `init` prompt) and removes it after:
one warm-up on the first `WARMUP_FRAMES`, then `runs` timed runs. The frame cap is there because
upstream's S3FD decodes every anchor scoring over 0.05 in a Python loop, and with random weights
every anchor does (71,666 on a 1216x704 frame): seconds per frame, where real weights pass few.
Stages are timed by wrapping upstream's functions from outside (restored after), each stage
with its exclusive time (one called inside another pauses the outer): `decode` (`video2imgs`
less its writes), `png_write` (every `cv2.imwrite`), `png_read` (`read_imgs`), `dwpose`,
`s3fd_net` (the network's forward), `s3fd_rest` (the rest of `get_detections_for_batch`: that
loop, NMS), `vae_encode` (`get_latents_for_unet`), `parse` (`get_image_prepare_material`), `save`
(`pickle.dump`, `torch.save`) and `other` (the rest: the box rule, crops, tqdm). Its compute is
the total less the disk stages (`png_write`, `png_read`, `save`).
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from bench.official_realtime import patched
from bench.official_workspace import _wrap_init_model, official_workspace, quiet
from runtime.engine.layout import ModelsLayout

IO_STAGES = ("png_write", "png_read", "save")
STAGES = (
    "decode",
    "png_write",
    "png_read",
    "dwpose",
    "s3fd_net",
    "s3fd_rest",
    "vae_encode",
    "parse",
    "save",
)
WARMUP_FRAMES = 2
CHEEK_WIDTH = 90  # --left_cheek_width / --right_cheek_width defaults
EXTRA_MARGIN = 10  # --extra_margin default
BATCH = 20  # --batch_size default (unused by preparation; Avatar stores it)

Box = tuple[int, int, int, int]


class StageClock:
    """Milliseconds per stage, exclusive: a stage entered inside another pauses the outer one,
    so the stages add up to at most the total. `sync` runs at every switch (CUDA work queued by
    one stage is charged to it)."""

    def __init__(
        self,
        sync: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.ms: dict[str, float] = {}
        self._stack: list[str] = []
        self._since = 0.0
        self._sync, self._clock = sync, clock

    def _switch(self, enter: str | None) -> None:
        self._sync()
        now = self._clock()
        if self._stack:
            running = self._stack[-1]
            self.ms[running] = self.ms.get(running, 0.0) + (now - self._since) * 1000
        if enter is None:
            self._stack.pop()
        else:
            self._stack.append(enter)
        self._since = now

    def wrap(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._switch(stage)
            try:
                return function(*args, **kwargs)
            finally:
                self._switch(None)

        return timed


def summarize(samples: Sequence[tuple[float, dict[str, float]]], frames: int) -> dict[str, Any]:
    """Timed runs (total seconds, exclusive ms per stage) as the report's figures: medians of
    the total, of its disk I/O and of the rest (compute), and each stage's median ms per frame
    (`other`: the total less every wrapped stage)."""
    totals = [total for total, _ in samples]
    io = [sum(ms.get(stage, 0.0) for stage in IO_STAGES) / 1000 for _, ms in samples]
    compute = [total - disk for total, disk in zip(totals, io, strict=True)]
    # S3FD's candidate loop walks every anchor over 0.05: all of them on random weights, a few
    # on trained ones, so the compute without it is the anchor that random weights cannot inflate.
    loop = [ms.get("s3fd_rest", 0.0) / 1000 for _, ms in samples]
    models = [c - anchors for c, anchors in zip(compute, loop, strict=True)]
    per_stage = {
        stage: statistics.median(ms.get(stage, 0.0) for _, ms in samples) for stage in STAGES
    }
    per_stage["other"] = statistics.median(total * 1000 - sum(ms.values()) for total, ms in samples)
    return {
        "total_s": round(statistics.median(totals), 2),
        "total_s_samples": [round(total, 2) for total in totals],
        "compute_s": round(statistics.median(compute), 2),
        "io_s": round(statistics.median(io), 2),
        "compute_less_s3fd_loop_s": round(statistics.median(models), 2),
        "ms_per_frame": {stage: round(ms / frames, 3) for stage, ms in per_stage.items()},
    }


def ratios(total_s: float, frames: int, official: dict[str, Any]) -> dict[str, float]:
    """How many times faster per frame a path prepared its `frames` than upstream's whole
    preparation, than its compute alone (its total less its PNG and pickle I/O) and than that
    compute less S3FD's candidate loop (the conservative anchor on random weights)."""
    per_frame = total_s / frames

    def times(key: str) -> float:
        return round(official[key] / official["frames"] / per_frame, 2)

    return {
        "vs_official": times("total_s"),
        "vs_official_compute": times("compute_s"),
        "vs_official_compute_less_s3fd_loop": times("compute_less_s3fd_loop_s"),
    }


def boxes_agreement(theirs: Sequence[Box | None], ours: Sequence[Box | None]) -> dict[str, Any]:
    """Upstream's face boxes (v1.5 margin applied, None for its no-face placeholder) against a
    path's, frame by frame: how many are identical (over the longer list: a frame one side
    lacks differs) and the largest coordinate difference where both found a face."""
    pairs = list(zip(theirs, ours, strict=False))
    both = [(a, b) for a, b in pairs if a is not None and b is not None]
    return {
        "boxes_identical": f"{sum(a == b for a, b in pairs)}/{max(len(theirs), len(ours))}",
        "boxes_max_abs_diff_px": max(
            (int(np.abs(np.subtract(a, b)).max()) for a, b in both), default=0
        ),
    }


def official_box(box: Any) -> Box | None:
    """An entry of upstream's `coord_list_cycle`: its (0.0, 0.0, 0.0, 0.0) placeholder is no
    face; a face box is a list of (numpy) ints."""
    values = tuple(int(v) for v in box)
    return None if values == (0, 0, 0, 0) else (values[0], values[1], values[2], values[3])


class OfficialPreparation:
    """Upstream's realtime script imported in `workspace`, its preparation globals set."""

    def __init__(self, workspace: Path, models: Path) -> None:
        from bench.official_loop import realtime_module

        self.device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        self.cudnn_benchmark = torch.backends.cudnn.benchmark
        _wrap_init_model()  # mmpose's init_model without the config's mmdet scope
        with quiet():
            script = realtime_module(workspace, stub_preprocessing=False)
        self.script, self.preprocessing = script, sys.modules["musetalk.utils.preprocessing"]
        layout = ModelsLayout(models)
        with quiet():  # __main__, line by line (an absolute vae_type wins over "models/")
            vae, unet, pe = script.load_all_model(
                unet_model_path=str(layout.unet_weights),
                vae_type=str(layout.vae_dir.resolve()),
                unet_config=str(layout.unet_config),
                device=self.device,
            )
            if self.device.type == "cuda":
                vae.vae = vae.vae.half().to(self.device)
                unet.model = unet.model.half().to(self.device)
                pe = pe.half().to(self.device)
            fp = script.FaceParsing(left_cheek_width=CHEEK_WIDTH, right_cheek_width=CHEEK_WIDTH)
        script.__dict__.update(
            args=argparse.Namespace(
                version="v15",
                extra_margin=EXTRA_MARGIN,
                parsing_mode="jaw",
                left_cheek_width=CHEEK_WIDTH,
                right_cheek_width=CHEEK_WIDTH,
                bbox_shift=0,
                batch_size=BATCH,
                skip_save_images=True,
            ),
            device=self.device,
            vae=vae,
            unet=unet,
            pe=pe,
            timesteps=torch.tensor([0], device=self.device),
            weight_dtype=unet.model.dtype,
            fp=fp,
        )
        self.vae_dtype = str(vae.vae.dtype).removeprefix("torch.")

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def _timed(self, clock: StageClock, frames: int) -> Iterator[None]:
        """Upstream's stages wrapped in `clock` where its code looks them up, restored after;
        `video2imgs` stops after `frames` frames (its own `cut_frame`)."""
        script, preprocessing = self.script, self.preprocessing
        targets = [
            (cv2, "imwrite", "png_write"),
            (preprocessing, "read_imgs", "png_read"),
            (preprocessing, "inference_topdown", "dwpose"),
            (preprocessing.fa, "get_detections_for_batch", "s3fd_rest"),
            (preprocessing.fa.face_detector.face_detector, "forward", "s3fd_net"),
            (script.vae, "get_latents_for_unet", "vae_encode"),
            (script, "get_image_prepare_material", "parse"),
            (pickle, "dump", "save"),
            (torch, "save", "save"),
        ]
        decode = clock.wrap("decode", _first_frames(script.video2imgs, frames))
        with contextlib.ExitStack() as stack:
            stack.enter_context(patched(script, "video2imgs", decode))
            for owner, name, stage in targets:
                stack.enter_context(patched(owner, name, clock.wrap(stage, getattr(owner, name))))
            yield

    def prepare(self, clip: Path, frames: int) -> tuple[float, dict[str, float], list[Box | None]]:
        """One `Avatar` preparation of `clip`'s first `frames` frames under a fresh id: seconds,
        exclusive ms per stage, and its face boxes (the cycle's first half: one per frame)."""
        clock = StageClock(self._sync)
        avatar_id = f"bench-{uuid.uuid4().hex[:8]}"
        with self._timed(clock, frames), quiet():
            self._sync()
            start = time.perf_counter()
            avatar = self.script.Avatar(
                avatar_id=avatar_id,
                video_path=str(clip.resolve()),
                bbox_shift=0,
                batch_size=BATCH,
                preparation=True,
            )
            self._sync()
            total = time.perf_counter() - start
        count = len(avatar.coord_list_cycle) // 2
        boxes = [official_box(box) for box in avatar.coord_list_cycle[:count]]
        shutil.rmtree(avatar.avatar_path)
        return total, clock.ms, boxes

    def close(self) -> None:
        """`FaceAlignment` turned cudnn's autotuning on for the whole process: as it was."""
        torch.backends.cudnn.benchmark = self.cudnn_benchmark


def _first_frames(video2imgs: Callable[..., Any], frames: int) -> Callable[..., Any]:
    """`video2imgs` stopping after `frames` frames, failing clearly where OpenCV decoded
    nothing (a build without FFmpeg)."""

    def decode(vid_path: str, save_path: str, *args: Any, **kwargs: Any) -> Any:
        answer = video2imgs(vid_path, save_path, *args, **{**kwargs, "cut_frame": frames - 1})
        if not any(Path(save_path).glob("*.png")):
            raise RuntimeError(
                f"upstream's video2imgs (cv2.VideoCapture) decoded no frame of {vid_path}"
            )
        return answer

    return decode


def measure(
    official: Path, models: Path, clip: Path, frames: int, runs: int
) -> tuple[dict[str, Any], list[Box | None]]:
    """Upstream's preparation of `clip`'s first `frames` frames: one warm-up on its first
    `WARMUP_FRAMES`, then `runs` timed runs; the figures and the last run's boxes."""
    with official_workspace(official.resolve(), models) as workspace:
        preparation = OfficialPreparation(workspace, models)
        try:
            preparation.prepare(clip, min(WARMUP_FRAMES, frames))
            samples: list[tuple[float, dict[str, float]]] = []
            boxes: list[Box | None] = []
            for _ in range(runs):
                total, stages, boxes = preparation.prepare(clip, frames)
                samples.append((total, stages))
        finally:
            preparation.close()
    figures = {
        "path": "upstream's Avatar.prepare_material (scripts/realtime_inference.py), its code",
        "device": str(preparation.device),
        "vae_dtype": preparation.vae_dtype,
        "face_models_dtype": "float32",
        "runs": runs,
        "warmup": f"one preparation of the clip's first {min(WARMUP_FRAMES, frames)} frames",
        "frames": frames,
        "frames_decoded": len(boxes),
        "faces": sum(box is not None for box in boxes),
        **summarize(samples, frames),
    }
    return figures, boxes
