"""A converted copy of the model weights that loads straight to the GPU (issue 10: cold start).

The official files are fp32 pickles (`unet.pth` is 3.4 GB): unpickling, building the modules
with random initialisation and casting to fp16 took most of a 16 s cold start. On first load
each model is written once as a safetensors file in the dtype it runs in; later loads build the
module on the meta device (no initialisation) and assign the tensors read straight onto the
device.

The cache lives in its own directory, by default beside the models directory
(`<models>.cache/`, or under the user's cache home where that cannot be written), never inside
it: the official layout stays as published, and
`upload-weights` (which uploads every file under the models directory) never sees it. Each file
records the size and modification time of the files it was made from; a cached copy whose
sources changed, or that cannot be read, is rebuilt from the sources.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from runtime.fileio import atomic_path

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
FINGERPRINT_KEY = "musetalk_fingerprint"


def default_cache_dir(models_dir: Path) -> Path:
    """`<models>.cache` beside the models directory where that can be written; otherwise (e.g.
    the worker image's `/models`, whose parent is `/`) a directory per models path under the
    user's cache home (`$XDG_CACHE_HOME` or `~/.cache`)."""
    resolved = models_dir.resolve()
    beside = resolved.with_name(resolved.name + ".cache")
    if os.access(beside if beside.exists() else resolved.parent, os.W_OK):
        return beside
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return home / "musetalk" / f"{resolved.name}-{digest}"


class WeightCache:
    """Per-model safetensors copies in one directory; `module` loads from it or fills it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hits: list[str] = []  # names served from the cache in this process (for reports)
        self._prefetched: dict[Path, Future[dict[str, torch.Tensor]]] = {}

    def prefetch(self, names: Sequence[str], device: torch.device, dtype: torch.dtype) -> None:
        """Start reading the cached copies of `names` onto `device` on a background thread.

        A fresh process spends seconds importing diffusers and transformers; reading the
        tensors (and the CUDA start-up the first device tensor triggers) overlaps with that.
        Nothing is validated here: `module` checks the fingerprint and discards a stale read.
        """
        paths = [path for name in names if (path := self.path(name, dtype)).is_file()]
        if not paths:
            return
        reader = ThreadPoolExecutor(1, thread_name_prefix="weights-prefetch")
        for path in paths:
            self._prefetched[path] = reader.submit(load_file, str(path), device=str(device))
        reader.shutdown(wait=False)

    def path(self, name: str, dtype: torch.dtype) -> Path:
        return self.directory / f"{name}.{str(dtype).removeprefix('torch.')}.safetensors"

    def module(
        self,
        name: str,
        sources: Sequence[Path],
        *,
        build_empty: Callable[[], torch.nn.Module],
        load_from_sources: Callable[[], torch.nn.Module],
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.nn.Module:
        """The model `name` on `device` in `dtype`, in eval mode.

        `build_empty` constructs the module (it runs on the meta device: no memory, no init);
        `load_from_sources` loads it the slow way from the official files, already on `device`
        in `dtype`. The cached copy is used only while `sources` are unchanged.
        """
        path = self.path(name, dtype)
        stamp = fingerprint(sources, dtype)
        prefetched = self._prefetched.pop(path, None)
        if _stored_fingerprint(path) == stamp:
            try:
                module = _load_cached(path, build_empty, device, prefetched)
            except (OSError, RuntimeError, ValueError, SafetensorError) as error:
                log.warning("weight cache %s unusable, rebuilding it: %s", path.name, error)
            else:
                self.hits.append(name)
                return module.eval()
        module = load_from_sources().eval()
        self._store(path, module, stamp)
        return module

    def _store(self, path: Path, module: torch.nn.Module, stamp: str) -> None:
        """Write atomically (temp file + rename): a crash never leaves a half file in place."""
        state = {key: value.detach().contiguous() for key, value in module.state_dict().items()}
        try:
            with atomic_path(path) as temporary:
                save_file(state, str(temporary), metadata={FINGERPRINT_KEY: stamp})
        except (OSError, RuntimeError, ValueError, SafetensorError) as error:
            # A read-only disk or tied weights: the engine still runs, only without the cache.
            log.warning("weight cache %s not written: %s", path.name, error)


def fingerprint(sources: Sequence[Path], dtype: torch.dtype) -> str:
    """The stamp a cached copy was made from: format, dtype, each source's name, size, mtime."""
    files = [
        {"name": source.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        for source in sources
        for stat in (source.stat(),)
    ]
    return json.dumps(
        {"format": CACHE_FORMAT, "dtype": str(dtype), "sources": files}, sort_keys=True
    )


def _stored_fingerprint(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as stored:
            metadata = stored.metadata() or {}
    except (OSError, SafetensorError) as error:
        log.warning("weight cache %s unreadable: %s", path.name, error)
        return None
    return metadata.get(FINGERPRINT_KEY)


def _load_cached(
    path: Path,
    build_empty: Callable[[], torch.nn.Module],
    device: torch.device,
    prefetched: Future[dict[str, torch.Tensor]] | None,
) -> torch.nn.Module:
    with torch.device("meta"):
        module = build_empty()
    state = prefetched.result() if prefetched else load_file(str(path), device=str(device))
    module.load_state_dict(state, strict=True, assign=True)
    left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"not in the cached state: {left[:3]}")
    return module


def load_module(
    cache: WeightCache | None,
    name: str,
    sources: Sequence[Path],
    *,
    build_empty: Callable[[], torch.nn.Module],
    load_from_sources: Callable[[], torch.nn.Module],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.nn.Module:
    """The model through the weight cache when there is one, else from the official files."""
    if cache is None:
        return load_from_sources().eval()
    return cache.module(
        name,
        sources,
        build_empty=build_empty,
        load_from_sources=load_from_sources,
        device=device,
        dtype=dtype,
    )
