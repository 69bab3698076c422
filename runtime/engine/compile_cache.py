"""`torch.compile` artifacts kept across processes, so a compiled start skips the compile.

Inductor already caches generated kernels on local disk, but a fresh container starts with an
empty cache and a compiled start measured 22-33 s (H200). `torch.compiler`'s portable cache
artifacts (the "mega-cache": Inductor code, AOTAutograd graphs, autotuning results) are saved
after the first compiled batch into the weight cache directory and loaded before the next
process compiles, which then finds every kernel ready. Dynamo still traces the models on the
first call; that part is not cached.

The file is keyed by torch version, GPU name, dtype and compile mode: artifacts from another
build or card are never loaded (they would only miss).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from runtime.fileio import write_atomic

log = logging.getLogger(__name__)


def artifacts_path(
    directory: Path,
    device: torch.device,
    dtype: torch.dtype,
    mode: str | None = None,
    *,
    graphs: str = "",
) -> Path:
    """One file per torch build, card, dtype, compile mode and set of `graphs` the engine
    warms up: a process that loaded artifacts saves none, so modes (or an older engine's
    graph set) sharing a file would leave the graphs missing from it compiled on every start."""
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    key = f"{torch.__version__}-{card}-{dtype}-{mode or 'default'}-{graphs}".lower()
    return directory / f"compiled-{re.sub(r'[^a-z0-9.]+', '_', key)}.bin"


def load_artifacts(path: Path) -> bool:
    """Prime torch's compile caches from `path`; False when there is nothing usable."""
    if not path.is_file():
        return False
    try:
        loaded = torch.compiler.load_cache_artifacts(path.read_bytes())
    except (OSError, RuntimeError, ValueError) as error:
        log.warning("compile artifacts %s not loaded: %s", path.name, error)
        return False
    if loaded is None:  # torch logs why (e.g. a corrupted file) and loads nothing
        log.warning("compile artifacts %s not loaded", path.name)
        return False
    return True


def save_artifacts(path: Path) -> bool:
    """Write everything this process compiled (atomically); False when nothing was."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return False
    data, _info = saved
    try:
        write_atomic(path, data)
    except OSError as error:
        log.warning("compile artifacts %s not written: %s", path.name, error)
        return False
    return True
