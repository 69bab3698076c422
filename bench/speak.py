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

This file runs the sections in order; each is a `bench/speak_*.py` module (flags, setup,
baselines, rows, probes, encoders, report).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.*` when run as a script

from bench.speak_baselines import official_loop
from bench.speak_encoders import encoder_figures, encoder_only
from bench.speak_options import parse_args
from bench.speak_probes import fp16_psnr, gpu_probes
from bench.speak_report import best_row, header, host_activity, with_ratios, write_report
from bench.speak_rows import RowRunner
from bench.speak_setup import bench_script, cold_start


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv, description=__doc__.split("\n\n")[0])
    device = torch.device(args.device)
    if args.encoder_only:
        return encoder_only(args)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    if args.quick:
        args.seconds, args.runs = min(args.seconds, 1.0), 1
    report = header(args, device)
    engine, avatar = cold_start(args, device, dtype, report)
    work = Path(tempfile.mkdtemp(prefix="speak-bench-"))
    rows = RowRunner(args, engine, avatar, work)
    report["frames"] = rows.frames
    plain_fps = rows.plain_row()
    if args.official:
        report["official_loop"] = official_loop(args, device, avatar, rows.audio)
    if not args.compiled_only:
        rows.eager_rows()
    if not (args.quick or args.compiled_only):
        extras(args, rows, report)
    if device.type == "cuda":
        gpu_probes(args, engine, avatar, max(rows.batches), report)
    rows.compiled_rows(args.compile_modes.split(",") if args.compile else [], dtype, report)
    report["runs"] = with_ratios(rows.rows, plain_fps, report.get("official_loop"))
    report["busy_after"] = host_activity()
    flop_floor = device.type == "cuda" and not args.tiny
    best, report["best"] = best_row(rows.rows, plain_fps, flop_floor=flop_floor)
    report["best"]["writer"] = best["writer"]
    report["latency_10s_clip_s"] = round(rows.latency(best), 3)
    if device.type == "cuda" and not args.skip_cold_start:
        states = args.cold_states.split(",")
        if args.cold_compile:
            states += ["compiled_first", "compiled_cached"]
        report["cold_start_fresh_process"] = bench_script("coldstart").cold_starts(
            args.models, str(device), states, work
        )
    return write_report(report, args.out)


def extras(args: argparse.Namespace, rows: RowRunner, report: dict[str, Any]) -> None:
    """The sections of a full (not `--quick`, not `--compiled-only`) run beside the rows: the
    encoders alone and the PSNR of the engine's precision (and bfloat16's) against fp32."""
    engine, avatar = rows.engine, rows.avatar
    encoder_figures(
        args, avatar, rows.audio, rows.work, rows.segment_counts, rows.segment_threads, report
    )
    report["psnr_fp16_vs_fp32_db"] = (
        round(fp16_psnr(engine, args.models, avatar), 2) if engine.dtype != torch.float32 else None
    )
    if args.bf16:
        report["psnr_bf16_vs_fp32_db"] = round(
            fp16_psnr(engine, args.models, avatar, dtype=torch.bfloat16), 2
        )


if __name__ == "__main__":
    main()
