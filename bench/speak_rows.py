"""The speak benchmark's rows: the whole clip rendered to a finished mp4, median of `--runs`,
by the plain path, the eager engine and each compiled engine, through each writer; and the
latency of a short clip with the best row's settings."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch

from bench.speak_baselines import PLAIN_BATCH, plain_models, plain_speak
from bench.speak_probes import gpu_path
from bench.speak_report import rounded
from bench.speak_setup import compile_cache_dir, load_engine, write_clip
from runtime.engine import segments as segmented
from runtime.engine import speak_pipeline
from runtime.engine.audio import frame_count, load_audio_16k
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.engine_contract import SEGMENT_FRAMES, SegmentPlan
from runtime.engine.options import RenderOptions
from runtime.engine.weight_cache import default_cache_dir

# The engine's own segment length for a split, before any row overrides it.
SPLIT_SEGMENT_FRAMES = speak_pipeline.SPLIT_SEGMENT_FRAMES
LATENCY_CLIP_S = 10.0


class Writer(NamedTuple):
    """How a render is encoded: one mp4 writer ("one"), the worker's path (a SegmentPlan,
    batches cut at segment boundaries: "segments"), or `speak` splitting a long clip itself
    ("split"); with `encoders` segment encoders of `threads` x264 threads each."""

    kind: str = "one"
    encoders: int = 1
    threads: int = segmented.ENCODER_THREADS
    split_frames: int = SPLIT_SEGMENT_FRAMES  # frames per segment of a "split"
    taper: bool = True  # a "split" with its last segment in halving pieces (SegmentPlan.taper)
    segment_frames: int = SEGMENT_FRAMES  # frames per segment of "segments" (the worker's)

    def as_report(self) -> dict[str, object]:
        """The fields that describe this writer (a split's segment length and taper, the
        worker's segment length where it is not the default)."""
        fields = self._asdict()
        if self.kind != "split":
            del fields["split_frames"], fields["taper"]
        if self.kind != "segments" or self.segment_frames == SEGMENT_FRAMES:
            del fields["segment_frames"]
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
        if self.kind == "segments" and self.segment_frames != SEGMENT_FRAMES:
            label += f", {self.segment_frames}-frame segments"
        return label


ONE_WRITER = Writer()


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


def _numbers(flag: str) -> list[int]:
    return [int(n) for n in flag.split(",") if n]


class RowRunner:
    """Renders the speech clip (every frame generated: the worst case) and keeps each row, in
    the order measured, with the engines that rendered them (for the latency of the best)."""

    def __init__(
        self, args: argparse.Namespace, engine: MuseTalkEngine, avatar: PreparedAvatar, work: Path
    ) -> None:
        self.args, self.engine, self.avatar, self.work = args, engine, avatar, work
        self.audio = write_clip(args.audio, args.seconds, work / "speech.wav")
        self.frames = frame_count(len(load_audio_16k(self.audio)), avatar.fps)
        self.options = RenderOptions(skip_silence=False)
        self.presets = args.presets.split(",")
        self.batches = [int(b) for b in args.batch_sizes.split(",")]
        self.segment_counts = _numbers(args.segment_encoders)
        self.segment_threads = _numbers(args.segment_threads)
        self.split_frames = _numbers(args.split_frames)
        self.segment_frames = _numbers(args.segment_frames)
        self.split_tapers = [flag == "taper" for flag in args.split_tails.split(",") if flag]
        self.rows: list[dict[str, Any]] = []
        self.engines = {"eager": engine}

    def render(
        self,
        batch: int,
        preset: str,
        engine: MuseTalkEngine | None = None,
        writer: Writer = ONE_WRITER,
        speech: Path | None = None,
        out: Path | None = None,
    ) -> Callable[[], dict[str, float]]:
        """One render of `speech` (the clip by default) by `engine` (the eager one by default)
        with `writer`; it returns the engine's stage timings (and the first segment's time)."""
        engine = self.engine if engine is None else engine
        speech = self.audio if speech is None else speech
        out = self.work / "out.mp4" if out is None else out

        def run() -> dict[str, float]:
            engine.encoder_preset = preset
            segmented.ENCODER_THREADS = writer.threads
            speak_pipeline.SPLIT_SEGMENT_FRAMES = writer.split_frames
            speak_pipeline.SPLIT_TAPER = writer.taper
            engine.segment_encoders = writer.encoders if writer.kind == "split" else 1
            finished: list[float] = []  # when each segment was done (the worker uploads it)
            plan = (
                SegmentPlan(
                    directory=self.work / "segments",
                    frames_per_segment=writer.segment_frames,
                    encoders=writer.encoders,
                    on_segment=lambda segment: finished.append(time.perf_counter()),
                )
                if writer.kind == "segments"
                else None
            )
            start = time.perf_counter()
            rendered = engine.speak(
                self.avatar, speech, out, options=self.options, batch_size=batch, segments=plan
            )
            assert speech != self.audio or rendered.frames == self.frames
            if finished:  # the first segment a user could get, from the render's start
                return {**rendered.timings_ms, "first_segment": (finished[0] - start) * 1000}
            return rendered.timings_ms

        return run

    def segment_writers(self, compiled: bool, preset: str) -> list[Writer]:
        """The worker's segmented path per count of encoders (per thread count too for a
        compiled engine at the first preset), then `speak`'s own split (compiled only)."""
        every_thread_count = compiled and preset == self.presets[0]
        chosen = []
        for threads in self.segment_threads if every_thread_count else self.segment_threads[:1]:
            chosen += [
                Writer("segments", n, threads, segment_frames=frames)
                for frames in self.segment_frames
                for n in self.segment_counts
            ]
        if compiled:
            chosen += [
                Writer("split", n, self.segment_threads[0], frames, taper)
                for frames in self.split_frames
                for taper in self.split_tapers
                for n in self.segment_counts
                if n > 1
            ]
        return chosen

    def plain_row(self) -> float:
        """The plain path's row (the first); its frames/s, every ratio's denominator."""
        plain = plain_models(self.engine, self.args.models, self.args.cache_dir)
        out = self.work / "plain.mp4"
        wall, timings = timed_runs(
            partial(plain_speak, self.engine, plain, self.avatar, self.audio, out, self.presets[0]),
            self.args.runs,
            warm_up=not self.args.quick,
        )
        del plain
        plain_fps = self.frames / wall
        self._add(
            {
                "path": f"plain eager batch {PLAIN_BATCH}",
                "preset": self.presets[0],
                "fps": round(plain_fps, 1),
                "stages_ms": rounded(timings),
            }
        )
        return plain_fps

    def eager_rows(self) -> None:
        """The eager engine per batch and preset, then through each segmented writer."""
        for batch in self.batches:
            for preset in self.presets:
                self.measure(batch, preset, self.engine, None, Writer())
        for writer in self.segment_writers(False, self.presets[0]):
            self.measure(max(self.batches), self.presets[0], self.engine, None, writer)

    def measure(
        self,
        batch: int,
        preset: str,
        engine: MuseTalkEngine,
        mode: str | None,
        writer: Writer,
        depth: int | None = None,
    ) -> None:
        """One row: the median of `--runs` renders of the whole clip."""
        wall, timings = timed_runs(
            self.render(batch, preset, engine, writer), self.args.runs, warm_up=not self.args.quick
        )
        compiled = f" compiled {mode}" if mode else ""
        in_flight = f", depth {depth}" if depth is not None else ""
        self._add(
            {
                "path": f"engine batch {batch}{compiled}{in_flight}{writer.label}",
                "pipeline_depth": engine.pipeline_depth,
                "preset": preset,
                "fps": round(self.frames / wall, 1),
                "stages_ms": rounded(timings),
                "batch": batch,
                "compile_mode": mode,
                "writer": writer.as_report(),
            }
        )

    def compiled_rows(
        self, modes: list[str], dtype: torch.dtype | None, report: dict[str, Any]
    ) -> None:
        """Each compile mode (and the last again with cuDNN autotuning, when asked): its load
        and first render, then its rows at each pipeline depth, preset and writer."""
        variants = [(mode, False) for mode in modes]
        if modes and self.args.cudnn_benchmark:
            variants.append((modes[-1], True))
        depths = _numbers(self.args.pipeline_depths) or [self.engine.pipeline_depth]
        batch = max(self.batches)
        for mode, cudnn_benchmark in variants:
            torch.backends.cudnn.benchmark = cudnn_benchmark
            name = f"{mode} cudnn-benchmark" if cudnn_benchmark else mode
            compiled = self._compiled_engine(mode, name, dtype, batch, report)
            for depth in depths:
                compiled.pipeline_depth = depth
                if self.engine.device.type == "cuda":
                    key = f"{name} depth {depth}"
                    report.setdefault("gpu_path", {})[key] = gpu_path(
                        compiled, self.avatar, self.audio, batch
                    )
                    print(json.dumps(report["gpu_path"][key]), flush=True)
                for preset in self.presets:
                    self.measure(batch, preset, compiled, name, Writer(), depth)
                    for writer in self.segment_writers(True, preset):
                        self.measure(batch, preset, compiled, name, writer, depth)
        torch.backends.cudnn.benchmark = False

    def _compiled_engine(
        self, mode: str, name: str, dtype: torch.dtype | None, batch: int, report: dict[str, Any]
    ) -> MuseTalkEngine:
        """The engine compiled in `mode`, timed from load to the end of its first render."""
        args = self.args
        start = time.perf_counter()
        # Each mode its own cache directory (weight cache and compile artifacts): the artifacts
        # `compile_artifacts` reports for a mode are that mode's alone.
        mode_cache = compile_cache_dir(args.cache_dir or default_cache_dir(args.models), mode)
        compiled = load_engine(
            args.models, self.engine.device, dtype, compile_mode=mode, cache_dir=mode_cache
        )
        self.render(batch, self.presets[-1], compiled)()
        report.setdefault("compile_first_render_s", {})[name] = round(
            time.perf_counter() - start, 1
        )
        report.setdefault("compile_artifacts", {})[name] = {
            "loaded": compiled.compile_artifacts_loaded,
            "directory": str(mode_cache),
        }
        self.engines[f"compiled {name}"] = compiled
        return compiled

    def latency(self, best: dict[str, Any]) -> float:
        """Median seconds to render a short clip (10 s, or the clip if shorter) to a finished
        mp4 with the best row's engine, batch, preset, writer and pipeline depth."""
        mode = best["compile_mode"]
        engine = self.engines["eager" if mode is None else f"compiled {mode}"]
        engine.pipeline_depth = best["pipeline_depth"]
        clip = write_clip(
            self.args.audio, min(LATENCY_CLIP_S, self.args.seconds), self.work / "clip.wav"
        )
        latencies = []
        for _ in range(self.args.runs):
            render = self.render(
                int(best["batch"]),
                best["preset"],
                engine,
                Writer(**best["writer"]),
                clip,
                self.work / "clip.mp4",
            )
            start = time.perf_counter()
            render()
            latencies.append(time.perf_counter() - start)
        return statistics.median(latencies)

    def _add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        print(json.dumps(row), flush=True)
