"""The demo's contact sheets: per job, the engine CLI's `contact-sheet` next to the mp4.

Made from the avatar the worker prepared for the job (read from the avatar-cache bucket, so
nothing is prepared twice; face detection dominates a CPU run) and the job's audio, with the
models directory the worker was given: the same stages on the same inputs as the render.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404 (the engine CLI as a child, our own argv, no shell)
import sys
from pathlib import Path
from typing import Any

from runtime.common.jobs import MODEL_VERSION
from runtime.common.keys import avatar_cache_key
from runtime.common.names import BucketRole
from runtime.local.stack import RunningStack

SHEET_TIMEOUT_SECONDS = 300


def contact_sheet(
    stack: RunningStack,
    *,
    avatar_id: str,
    audio: Path,
    models_dir: Path,
    png: Path,
    work_dir: Path,
) -> dict[str, Any]:
    """Write `png`; returns the engine's findings (`verdict`: why the lips move or not), or
    `{"error": ...}` when the sheet could not be made (the render itself is unaffected)."""
    prepared = work_dir / f"{png.stem}.prepared.bin"
    stack.client("s3").download_file(
        stack.resources.names.bucket(BucketRole.AVATAR_CACHE),
        avatar_cache_key(MODEL_VERSION, avatar_id),
        str(prepared),
    )
    command = [
        sys.executable,
        "-m",
        "runtime.engine",
        "contact-sheet",
        "--prepared",
        str(prepared),
        "--audio",
        str(audio),
        "--models",
        str(models_dir),
        "--out",
        str(png),
        "--device",
        "cpu",
    ]
    result = subprocess.run(  # noqa: S603  # nosec B603 (argv is ours, no shell)
        command, capture_output=True, text=True, timeout=SHEET_TIMEOUT_SECONDS, check=False
    )
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]}
    findings: dict[str, Any] = json.loads(result.stdout)
    return findings
