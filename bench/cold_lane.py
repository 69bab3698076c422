"""Time from a message in an empty lane to its first finished segment, built from its parts.

Nothing here is timed: each part is a figure measured elsewhere (a file under bench/results/,
named with its card) or an assumption, named as one with its source, that a flag overrides. The
control-plane simulation of issue 18 (scale-out from zero, parameterised cold start) is the
source meant for the instance's boot; until it lands, `INSTANCE_BOOT_ASSUMED_S` stands in.

    python bench/cold_lane.py [--boot-s 90] [--pull-mb-s 150] [--s3-mb-s 1100] \
        [--speak bench/results/2026-12-06-h100-eager-speak.json] [--out lane.json]

Parts, in the order a cold lane pays them (the worker overlaps its model-library imports with
the weight sync, `service._start`; everything else is serial):

1. the spot instance boots and joins the ECS cluster (assumption);
2. the worker image is pulled (its size over ECR pull throughput, assumption for the speed);
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

# Assumption, not measured: the control-plane simulation's (issue 18) cold start will replace it.
# 90 s is the middle of what ECS-on-EC2 GPU capacity providers are usually quoted to take from
# a scale-out decision to a registered container instance (60-120 s).
INSTANCE_BOOT_ASSUMED_S = 90.0
# Assumption: ECR pull and layer extraction on a GPU instance's EBS volume, MB/s.
IMAGE_PULL_ASSUMED_MB_S = 150.0
# docs/worker.md: the lock's wheels are ~2.5 GB to download (installed, torch + nvidia-* +
# triton take 4,458 MB on the device image: bench/results/2026-12-06-h100-official.md); the CUDA
# runtime base (docker/Dockerfile's CUDA_IMAGE) is not counted here, issue 18 replaces it.
IMAGE_WHEELS_MB = 2500.0
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
    # without a report: the worker path's frames/s on the H100, 2026-12-06 (AOT ~ compiled)
    segment, segment_source = first_segment_s(args.speak, 433.2 if aot else 277.0)
    rows = [
        ("instance boot", args.boot_s, "assumed: INSTANCE_BOOT_ASSUMED_S (issue 18's sim)"),
        (
            "image pull",
            IMAGE_WHEELS_MB / args.pull_mb_s,
            f"{IMAGE_WHEELS_MB:.0f} MB (docs/worker.md) at an assumed {args.pull_mb_s} MB/s",
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
    parser.add_argument("--boot-s", type=float, default=INSTANCE_BOOT_ASSUMED_S)
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
