"""The preparation benchmark's runs, in one process on one engine: the per-frame reference
first, then each variant warmed up and timed against it, then the profile; the result is saved
after each so a run cut short keeps what it measured."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench import official_prepare
from bench.prepare_agreement import agreement
from bench.prepare_paths import ours, per_frame, synchronize
from bench.prepare_profile import profile
from bench.prepare_report import per_frame_ms, rounded
from bench.prepare_setup import say, write_avatar
from bench.prepare_variants import Variant, configure, prepare_packages, variant_name
from runtime.engine.avatar_reader import decode_avatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.layout import ModelsLayout

WARMUP_FRAMES = 8


class PrepareRun:
    """The engine, the face models per dtype, the two clips (the timed one and the warm-up's),
    the per-frame reference and the result being filled in."""

    def __init__(
        self,
        args: argparse.Namespace,
        engine: MuseTalkEngine,
        faces: dict[torch.dtype, tuple[Any, Any]],
        result: dict[str, Any],
    ) -> None:
        self.args, self.engine, self.faces, self.result = args, engine, faces, result
        self.frames: int = result["avatar"]["frames"]
        self.compiled: dict[Any, Any] = {}
        self.built: dict[torch.dtype, tuple[Path, dict[str, float]]] = {}
        # per path, for --official: its total seconds and face boxes
        self.totals: dict[str, float] = {}
        self.boxes: dict[str, list[official_prepare.Box | None]] = {}

    def save(self) -> None:
        """The result so far, to `--out` if given."""
        if self.args.out is not None:
            self.args.out.write_text(json.dumps(self.result, indent=2) + "\n")

    def write_clips(self, directory: Path) -> None:
        """The timed clip and the shorter warm-up clip, both at `--scale`."""
        self.avatar = write_avatar(
            directory / "avatar.mp4", frames=self.frames, scale=self.args.scale
        )
        self.warm_frames = min(WARMUP_FRAMES * 4, self.frames)
        self.warm = write_avatar(
            directory / "warm.mp4", frames=self.warm_frames, scale=self.args.scale
        )

    def per_frame_reference(self) -> None:
        """The baseline first, after a warm-up (allocator, cuDNN autotuning, mmpose first
        calls); its results are what every variant is compared with."""
        engine, fp32_faces = self.engine, self.faces[torch.float32]
        per_frame(engine, *fp32_faces, self.warm)
        say(f"preparing {self.frames} frames per frame")
        synchronize(engine.device)
        start = time.perf_counter()
        self.reference, theirs, self.theirs_seen = per_frame(engine, *fp32_faces, self.avatar)
        self.total_per_frame = time.perf_counter() - start
        self.totals["per_frame"] = self.total_per_frame
        self.boxes["per_frame"] = [
            (b.x1, b.y1, b.x2, b.y2) if b is not None else None for b in self.reference["boxes"]
        ]
        self.result["per_frame"] = {
            "face_models_dtype": "float32",
            "ms_per_frame": per_frame_ms(theirs, self.frames),
            "total_s": round(self.total_per_frame, 2),
        }
        say(f"per frame: {self.total_per_frame:.2f} s")
        self.save()

    def decode_alone(self) -> None:
        """The clip decoded with no other thread: what the decoding costs without contention
        (and the frame size the AOT packages are built for)."""
        self.frame_size = decode_avatar(self.warm, still_fps=25).frames[0].shape[:2]
        start = time.perf_counter()
        decode_avatar(self.avatar, still_fps=25)
        self.result["decode_alone_s"] = round(time.perf_counter() - start, 3)

    def packages_for(self, dtype: torch.dtype) -> Callable[[], tuple[Path, ModelsLayout]]:
        """Builds preparation's AOT packages for `dtype` on first call (once per dtype)."""

        def packages() -> tuple[Path, ModelsLayout]:
            if dtype not in self.built:
                height, width = self.frame_size
                say(f"building preparation's AOT packages for {height}x{width}, {dtype}")
                self.built[dtype] = prepare_packages(
                    self.engine, self.args.models, (height, width), dtype
                )
            return self.built[dtype][0], ModelsLayout(self.args.models)

        return packages

    def variant(self, mode: str, dtype: torch.dtype, ops: str, flags: frozenset[str]) -> None:
        """One variant warmed up (a compiled one compiles here: its warm-up time), then timed
        and compared with the reference; its failure (a compiler's) ends only it."""
        engine, name = self.engine, variant_name(mode, dtype, ops, flags)
        engine.locator, engine.parser = self.faces[dtype]
        try:
            start = time.perf_counter()
            configure(engine, flags, self.compiled, self.packages_for(dtype))
            ours(engine, self.warm, mode, ops)
            warmup_s = time.perf_counter() - start
            say(f"{name}: warm-up ({self.warm_frames} frames) {warmup_s:.1f} s")
            prepared, stages, total, seen = ours(engine, self.avatar, mode, ops)
        except Exception as error:
            self.result["failed"][name] = f"{type(error).__name__}: {error}"[:500]
            say(f"{name} failed: {self.result['failed'][name]}")
            return
        height, width = prepared.frames.shape[1:3]
        self.result["avatar"].update(width=width, height=height, fps=prepared.fps)
        figures = self.result["variants"][name] = {
            "ms_per_frame": per_frame_ms(stages, self.frames),
            "warmup_s": round(warmup_s, 2),
            "total_s": round(total, 2),
            "speedup": round(self.total_per_frame / total, 2),
            "agreement": agreement(prepared, self.reference, seen, self.theirs_seen),
        }
        self.totals[name] = total
        self.boxes[name] = [
            (int(x1), int(y1), int(x2), int(y2)) if face else None
            for (x1, y1, x2, y2), face in zip(prepared.boxes, prepared.has_face, strict=True)
        ]
        if "aot" in flags:
            figures["aot_build_s"] = self.built[dtype][1]
            figures["aot_load_ms"] = rounded(engine.prepare_packages_ms)
        del prepared
        say(f"{name}: {total:.2f} s, {figures['speedup']}x")
        self.save()

    def official_baseline(self) -> None:
        """Upstream's own preparation of the clip's first `--official-frames` frames on the same
        weights (bench/official_prepare.py), then every path's per-frame ratios to it and its
        boxes against upstream's on those frames; its failure ends only it."""
        frames = min(self.args.official_frames, self.frames)
        say(f"preparing {frames} frames by upstream's code ({self.args.official})")
        try:
            official, theirs = official_prepare.measure(
                self.args.official, self.args.models, self.avatar, frames, self.args.official_runs
            )
        except Exception as error:
            self.result["failed"]["official"] = f"{type(error).__name__}: {error}"[:500]
            say(f"official failed: {self.result['failed']['official']}")
            return
        self.result["official"] = official
        paths = {"per_frame": self.result["per_frame"], **self.result["variants"]}
        for name, figures in paths.items():
            figures.update(official_prepare.ratios(self.totals[name], self.frames, official))
            figures["official_boxes"] = official_prepare.boxes_agreement(
                theirs, self.boxes[name][:frames]
            )
        say(f"official: {official['total_s']:.2f} s, compute {official['compute_s']:.2f} s")
        self.save()

    def profile_last(self, variants: list[Variant], directory: Path) -> None:
        """The last variant that ran, profiled on the warm-up clip into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        mode, dtype, ops, flags = next(
            v for v in reversed(variants) if variant_name(*v) in self.result["variants"]
        )
        self.engine.locator, self.engine.parser = self.faces[dtype]
        configure(self.engine, flags, self.compiled, self.packages_for(dtype))
        say(f"profiling {self.warm_frames} frames, {variant_name(mode, dtype, ops, flags)}")
        profile(self.engine, self.warm, mode, ops, directory / "profile.txt")
