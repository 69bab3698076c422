"""The preparation benchmark's result: its header (setup), per-stage figures, and the table
printed at the end."""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from typing import Any

import torch

from bench.host_info import host
from runtime.engine.engine import MuseTalkEngine

STAGES = ("decode", "decode_wait", "locate", "s3fd", "dwpose", "crop", "vae_encode", "parse")


def header(engine: MuseTalkEngine, frames: int, *, smoke: bool) -> dict[str, Any]:
    """The result before any path ran: the setup, and empty variants and failures."""
    return {
        "benchmark": "prepare",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": device_name(engine.device),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "host": host(),
        "weights": "random: full-size VAE + S3FD/DWPose/BiSeNet"
        if not smoke
        else "random: tiny VAE, full-size S3FD/DWPose/BiSeNet",
        "vae_dtype": str(engine.dtype).removeprefix("torch."),
        "avatar": {"frames": frames},
        "variants": {},
        "failed": {},
    }


def per_frame_ms(timings: dict[str, float], frames: int) -> dict[str, float]:
    return {stage: round(timings.get(stage, 0.0) / frames, 3) for stage in STAGES}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def rounded(timings: dict[str, float]) -> dict[str, float]:
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
    official = result.get("official")
    if official is not None:
        paths = [result["variants"][n] for n in names] + [result["per_frame"]]
        for label, key in (
            ("x official", "vs_official"),
            ("x official compute", "vs_official_compute"),
            ("x o. less S3FD loop", "vs_official_compute_less_s3fd_loop"),
        ):
            print(
                f"{label:<18}"
                + "".join(f"{p[key]:>20.2f}" for p in paths[:-1])
                + f"{paths[-1][key]:>12.2f}"
            )
        print_official(official, result["per_frame"])
    for name in names:
        variant = result["variants"][name]
        print(
            f"{name}: speed-up {variant['speedup']}x, warm-up {variant['warmup_s']} s; agreement",
            json.dumps(variant["agreement"]),
        )
        if "official_boxes" in variant:
            print(f"{name}: boxes against upstream's", json.dumps(variant["official_boxes"]))
    for name, error in result["failed"].items():
        print(f"{name}: FAILED {error}")


def print_official(official: dict[str, Any], per_frame: dict[str, Any]) -> None:
    """Upstream's own preparation: its total, compute and disk I/O, its stages, and how the
    per-frame emulation's boxes and time compare with it."""
    stages = ", ".join(f"{stage} {ms:.2f}" for stage, ms in official["ms_per_frame"].items())
    print(
        f"official (upstream's code, {official['device']}, VAE {official['vae_dtype']}, first "
        f"{official['frames']} frames): total {official['total_s']} s (runs "
        f"{official['total_s_samples']}), compute "
        f"{official['compute_s']} s, disk I/O {official['io_s']} s; ms/frame: {stages}"
    )
    anchors_s = official["ms_per_frame"]["s3fd_rest"] * official["frames"] / 1000
    print(
        f"official s3fd_rest (its Python loop over every S3FD anchor over 0.05: all of them on "
        f"random weights, few on real ones): {anchors_s:.2f} s, "
        f"{anchors_s / official['compute_s']:.0%} of its compute"
    )
    print(
        f"per-frame emulation: {per_frame['vs_official']}x upstream's total per frame, "
        f"{per_frame['vs_official_compute']}x its compute; boxes against upstream's",
        json.dumps(per_frame["official_boxes"]),
    )
