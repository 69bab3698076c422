"""`python -m runtime.worker.publish_aot`: build this card's AOT packages and put them in the
weights bucket, where workers with `MUSETALK_COMPILE=aot` download them before loading the
engine (`engine_loader.ArtifactSync`).

The worker image has no C++ compiler or CUDA headers, so its workers cannot build packages
themselves. Run this once per (GPU model, torch build, weights) on a machine with the fleet's
card, the image's torch, the same models directory the workers sync, `g++` and the CUDA
toolkit's headers (minutes: `build-artifacts`):

    MUSETALK_WEIGHTS_BUCKET=<bucket> python -m runtime.worker.publish_aot --models /models
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.common.names import EnvVar
from runtime.engine.cli import add_max_autotune_option
from runtime.worker.engine_loader import ArtifactSync


def publish(
    models_dir: Path,
    bucket: str,
    device: str,
    dtype: str,
    *,
    max_autotune: str | None = None,
    force: bool = False,
    s3: Any = None,
) -> dict[str, Any]:
    """Build the packages of this card's key where they are not built yet, then upload them
    (manifest last) unless the bucket has them already; what was done, as a report."""
    from runtime.engine.cli import main as engine_cli

    sync = ArtifactSync.for_engine(bucket, models_dir, device, dtype, s3=s3)
    assert sync is not None  # noqa: S101  # nosec B101 (a bucket was given)
    report: dict[str, Any] = {"bucket": bucket, "prefix": sync.prefix}
    if not force and sync.published():
        return {**report, "uploaded": False, "reason": "already in the bucket"}
    build = ["build-artifacts", "--models", str(models_dir), "--device", device, "--dtype", dtype]
    if max_autotune is not None:  # else build-artifacts' default (aot_build.AUTOTUNED_AHEAD)
        build += ["--max-autotune", max_autotune]
    if engine_cli([*build, *(["--force"] if force else [])]) != 0:
        return {**report, "uploaded": False, "reason": "the build failed"}
    return {**report, "uploaded": sync.upload()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="the workers' models directory")
    parser.add_argument(
        "--bucket",
        default=os.environ.get(EnvVar.WEIGHTS_BUCKET),
        help=f"the weights bucket (default: ${EnvVar.WEIGHTS_BUCKET})",
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16", help="the workers' MUSETALK_DTYPE")
    parser.add_argument("--force", action="store_true", help="rebuild and upload again")
    add_max_autotune_option(parser)
    args = parser.parse_args(argv)
    if not args.bucket:
        parser.error(f"--bucket or {EnvVar.WEIGHTS_BUCKET} is required")
    report = publish(
        args.models,
        args.bucket,
        args.device,
        args.dtype,
        max_autotune=args.max_autotune,
        force=args.force,
    )
    print(json.dumps(report), file=sys.stdout)
    return 0 if report["uploaded"] or report.get("reason") == "already in the bucket" else 1


if __name__ == "__main__":
    sys.exit(main())
