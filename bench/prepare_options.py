"""The preparation benchmark's command line: every flag and its default."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.prepare_variants import parse_variant


def parse_args(argv: Sequence[str] | None, description: str) -> argparse.Namespace:
    """The parsed flags; `--smoke` caps the clip at 2 frames downscaled to a quarter."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", type=Path, required=True, help="written here if missing")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--scale", type=float, default=1.0, help="downscale the avatar frames")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--variants",
        type=lambda text: [parse_variant(v) for v in text.split(",")],
        help="MODE:DTYPE[:OPS][+FLAG...],... (default: serial and pipelined, default dtype/ops)",
    )
    parser.add_argument("--smoke", action="store_true", help="CPU check: tiny VAE, 2 small frames")
    parser.add_argument(
        "--profile", type=Path, help="profile the last variant on the warm-up clip, into this dir"
    )
    parser.add_argument(
        "--official",
        type=Path,
        help="a TMElyralab/MuseTalk checkout: also run its realtime avatar preparation "
        "(bench/official_prepare.py) on the same clip and weights",
    )
    parser.add_argument(
        "--official-runs", type=int, default=1, help="timed runs of upstream's preparation"
    )
    parser.add_argument(
        "--official-frames",
        type=int,
        default=25,
        help="upstream prepares the clip's first N frames (its S3FD decodes every anchor in "
        "Python: with random weights, seconds per full-size frame); ratios are per frame",
    )
    parser.add_argument("--out", type=Path, help="also write the result as JSON")
    args = parser.parse_args(argv)
    script = args.official and args.official / "scripts" / "realtime_inference.py"
    if script and not script.is_file():
        parser.error(f"--official: {script} not found (a TMElyralab/MuseTalk checkout)")
    if args.official_runs < 1 or args.official_frames < 1:
        parser.error("--official-runs and --official-frames: at least 1")
    if args.smoke:
        args.seconds, args.scale = min(args.seconds, 2 / 25), min(args.scale, 0.25)
    return args
