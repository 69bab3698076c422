"""What a result's host was: host-bound figures (x264, blending, upstream's loops) move with the
CPU between machines of the same GPU, so every result names it."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first `model name` of /proc/cpuinfo (Linux), else what `platform` knows."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name":
                return value.strip()
    return platform.processor() or platform.machine()


def host() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version()}
