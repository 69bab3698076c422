"""Time from a message in an empty lane to its first finished segment, built from its parts.

Nothing here is timed: each part is a figure measured elsewhere (a file under bench/results/,
named with its card), a parameter of the control-plane simulation (`infra/simulation`, the
source for what AWS does before a container starts), or an assumption named as one with its
source; a flag overrides each.

    python bench/cold_lane.py [--boot-s 150] [--pull-mb-s 150] [--s3-mb-s 1100] \
        [--speak bench/results/2026-12-06-h100-eager-speak.json] [--out lane.json]

Parts, in the order a cold lane pays them (the worker overlaps its model-library imports with
the weight sync, `service._start`; everything else is serial):

0. the scale-out decision: the backlog metric's delay, the step alarm's minute and managed
   scaling's minute (the simulation's, `scenarios.cold_start_budget`);
1. the spot instance boots and joins the ECS cluster (the simulation's `ColdStart.host_boot`);
2. the worker image is pulled (its wheels' download size, measured from the lock, over ECR pull
   throughput, an assumption);
3. the weights sync from S3 (bytes over parallel ranged-read throughput, assumption for the
   speed; `runtime/worker/weights.py` fetches 4 files at once, 32 ranges of 32 MiB each);
4. the engine is ready from local weights (measured, H100);
5. the avatar is prepared when the lane has never seen it (measured, H100), else 0;
6. the first 125-frame segment is finished (measured, H100, from a speak report's
   `first_segment` of the worker's path, or the rate of its row).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from infra.simulation.alarms import METRIC_DELAY_SECONDS
from infra.simulation.ecs import ColdStart

# The simulation's host launch to ECS agent registered (docs/simulation.md, "Cold start").
INSTANCE_BOOT_S = float(ColdStart().host_boot)
# The simulation's reaction to a first message: the metric's delay, then the step alarm's and
# managed scaling's evaluation minutes (the first terms of `scenarios.cold_start_budget`).
SCALE_OUT_S = float(METRIC_DELAY_SECONDS + 60 + 60)
# Assumption: ECR pull and layer extraction on a GPU instance's EBS volume, MB/s.
IMAGE_PULL_ASSUMED_MB_S = 150.0
# Measured 2026-12-06 (bench/results/2026-12-06-worker-image-wheels.txt): `pip download
# --no-deps` of docker/requirements.lock for the image's platform (CPython 3.12 manylinux
# x86_64): 100 wheels, 2,995 MB (torch 527, nvidia-* and triton 2,195 of it), plus
# xtcocotools' sdist, built in the image; less triton's 197.7 MB, which the lock leaves out
# since 2026-12-07 (docker/lock.py LEFT_OUT). The ubuntu:24.04 base (about 30 MB compressed) is
# not counted; installed layers compress to about the wheels' size.
IMAGE_WHEELS_MB = 2995.0 - 197.7
# Assumption: S3 -> EC2 in one region with parallel ranged GETs, capped by a 10 Gbit/s NIC
# (g5/g6 xlarge "up to 10 Gbps"), MB/s. One connection alone gets about 100.
S3_ASSUMED_MB_S = 1100.0
# The official weights the worker syncs (MB): UNet 3,400, sd-vae 335, whisper-tiny 151, DWPose
# 406, S3FD 86, BiSeNet 53 + its ResNet-18 47.
WEIGHTS_MB = 3400.0 + 335 + 151 + 406 + 86 + 53 + 47
# Measured (bench/results/2026-11-26-h100-coldstart-3.md, H100): AOT engine ready 7.7-8.3 s
# from interpreter start, `import torch` included; the worker imports torch during the sync.
ENGINE_READY_AOT_S = 8.0
# Measured (bench/results/2026-11-26-h100-coldstart-2.md, H100): eager, minimal env (the
# worker's view: torch and our requirements only), 10.3-10.6 s; 14.65 s in the device's full
# image (2026-12-06-h100-official.md).
ENGINE_READY_EAGER_S = 10.5
# Measured (bench/results/2026-12-06-h100-official.md, H100): 750 frames of 704x1216,
# default fp32 face models, eager 7.73 s; from the AOT packages 5.35 s.
PREPARE_30S_EAGER_S = 7.73
PREPARE_30S_AOT_S = 5.35
SEGMENT_FRAMES = 125


def first_segment_s(speak: Path | None, fallback_fps: float) -> tuple[float, str]:
    """The worker path's first finished segment from a speak report, else 125 frames at
    `fallback_fps` (no encoder flush counted)."""
    if speak is not None:
        report = json.loads(speak.read_text())
        rows = [
            row
            for row in report["runs"]
            if row.get("writer", {}).get("kind") == "segments"
            and "first_segment" in row["stages_ms"]
        ]
        if rows:
            best = min(rows, key=lambda row: row["stages_ms"]["first_segment"])
            return best["stages_ms"]["first_segment"] / 1000, f"measured: {speak.name}"
    return SEGMENT_FRAMES / fallback_fps, f"125 frames at {fallback_fps} frames/s"


def parts(args: argparse.Namespace) -> list[dict[str, Any]]:
    aot = args.engine == "aot"
    # without a report: the worker path's frames/s on the H100 (AOT 2026-12-07, eager 2026-12-06)
    segment, segment_source = first_segment_s(args.speak, 463.5 if aot else 277.0)
    rows = [
        (
            "scale-out decision",
            args.scale_out_s,
            "simulation: metric delay + step alarm + managed scaling (cold_start_budget);"
            " the lane queue kept active for CloudWatch by the sweeper",
        ),
        ("instance boot", args.boot_s, "simulation: ColdStart.host_boot"),
        (
            "image pull",
            IMAGE_WHEELS_MB / args.pull_mb_s,
            f"{IMAGE_WHEELS_MB:.0f} MB of wheels (measured, the lock) at an assumed"
            f" {args.pull_mb_s} MB/s",
        ),
        (
            "weights sync",
            WEIGHTS_MB / args.s3_mb_s,
            f"{WEIGHTS_MB:.0f} MB at an assumed {args.s3_mb_s} MB/s",
        ),
        (
            "engine ready",
            ENGINE_READY_AOT_S if aot else ENGINE_READY_EAGER_S,
            "measured, H100 (coldstart-3 / coldstart-2)",
        ),
        (
            "avatar preparation (new avatar, 30 s)",
            0.0 if args.avatar_cached else (PREPARE_30S_AOT_S if aot else PREPARE_30S_EAGER_S),
            "cached avatar" if args.avatar_cached else "measured, H100 (2026-12-06)",
        ),
        ("first 125-frame segment", segment, segment_source),
    ]
    return [{"part": name, "s": round(s, 2), "source": source} for name, s, source in rows]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale-out-s", type=float, default=SCALE_OUT_S)
    parser.add_argument("--boot-s", type=float, default=INSTANCE_BOOT_S)
    parser.add_argument("--pull-mb-s", type=float, default=IMAGE_PULL_ASSUMED_MB_S)
    parser.add_argument("--s3-mb-s", type=float, default=S3_ASSUMED_MB_S)
    parser.add_argument("--engine", choices=["aot", "eager"], default="aot")
    parser.add_argument("--avatar-cached", action="store_true")
    parser.add_argument("--speak", type=Path, help="a speak report with the worker's path rows")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    table = parts(args)
    result = {
        "engine": args.engine,
        "parts": table,
        "total_s": round(sum(p["s"] for p in table), 1),
    }
    for part in table:
        print(f"{part['part']:<40}{part['s']:>8.2f} s   {part['source']}")
    print(f"{'message to first finished segment':<40}{result['total_s']:>8.1f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
