"""The speak benchmark's report: what ran where, each row's ratios, the best row, the output."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench.host_info import host

FLOP_PER_FRAME = 800e9  # UNet ~178 GFLOP + VAE decode ~622 GFLOP at 256x256 (issue 10)
H100_DENSE_FP16_FLOPS = 750e12  # measured 8192^3 fp16/bf16 matmul on the device machine


def rounded(timings: dict[str, float]) -> dict[str, float]:
    return {stage: round(ms, 1) for stage, ms in timings.items()}


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


def header(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The report's opening fields: when, on what, with which weights and avatar."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "host": host(),
        "busy_before": host_activity(),
        "torch": torch.__version__,
        "weights": "random, tiny" if args.tiny else "random, full size (official shapes)",
        "avatar": (
            f"{args.avatar.name}: real frames; one face box of the sample's geometry and an "
            "elliptic blend mask for every frame (no face models); latents from our VAE encoder"
        ),
    }


def with_ratios(
    rows: list[dict[str, Any]], plain_fps: float, official: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Every row's frames/s over the plain path's and, when it ran, the official loop's."""
    for row in rows:
        row["vs_plain"] = round(row["fps"] / plain_fps, 2)
        if official:
            row["vs_official"] = round(row["fps"] / official["fps"], 2)
    return rows


def best_row(
    rows: list[dict[str, Any]], plain_fps: float, *, flop_floor: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fastest engine row (the first row is the plain path) and its summary for the report;
    the share of the FLOP floor only where it means something (`flop_floor`: full size, GPU)."""
    best = max(rows[1:], key=lambda row: row["fps"])
    summary = {
        "path": best["path"],
        "preset": best["preset"],
        "fps": best["fps"],
        "ratio_to_plain": round(best["fps"] / plain_fps, 2),
        "ratio_to_official": best.get("vs_official"),
        "share_of_flop_floor": (
            round(best["fps"] * FLOP_PER_FRAME / H100_DENSE_FP16_FLOPS, 3) if flop_floor else None
        ),
    }
    return best, summary


def write_report(report: dict[str, Any], out: Path | None) -> dict[str, Any]:
    """The report as indented JSON on stdout and, with `--out`, in that file."""
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if out:
        out.write_text(text + "\n")
    return report
