"""What an AOTInductor package of the per-frame models is and where it lives: its key, its
directory in the weight cache, its files and the input shapes it is built for.

A compiled engine loads the per-frame models from these packages instead of running
`torch.compile` in each new process: a package is the compiled model itself (a shared library
exported once with `torch.export` at the engine's static batch size, its weights in a
safetensors file beside it), loaded with torch's C++ package loader, which needs neither Dynamo
nor diffusers nor transformers, so a fresh process is ready in seconds. Three packages, one per
model the speak path runs: the UNet step (timestep 0), the VAE decoder including the uint8
conversion, and the Whisper encoder (one static 30 s window) with the five hidden states
stacked; preparation's packages are `aot_prepare`'s.

Building is `aot_build`, loading (with its crash guard) `aot_load`, and the engine-facing
stand-ins for the generator, codec and audio encoder `aot_adapters`. The engine uses them when
asked (`MuseTalkEngine.load(..., aot_packages=True)`).

Packages live in the weight cache directory under `aot/<key digest>/`; the key is the torch
version, GPU name and capability, dtype, batch size and the stamp of the source weights, so a
package from another build, card or checkpoint is never loaded (it would fail or be wrong).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from runtime.engine.audio import D_MODEL, TOKENS_PER_FRAME
from runtime.engine.layout import VERIFIED_STAMP_NAME, ModelsLayout
from runtime.engine.weight_cache import fingerprint

log = logging.getLogger(__name__)

# Bumped whenever the exported graphs or the files change (2: upsamplers folded,
# runtime/engine/upsample.py; 3: weights beside the library, see CONSTANTS_SUFFIX; 4: built
# with the system g++, see aot_build.compiler_wrapper: format 3 libraries crash on the H100 image).
PACKAGE_FORMAT = 4
UNET = "unet"
DECODER = "vae_decoder"
WHISPER = "whisper_encoder"
MODELS = (UNET, DECODER, WHISPER)
MANIFEST = "manifest.json"
MEL_FILTERS = "mel_filters.npy"
# Each package's weights, in a safetensors file beside it, handed to the runner on load (user
# managed: no copy). Inductor's default embeds them in the shared library (1.7 GB for the UNet,
# written out again from the archive on every load).
CONSTANTS_SUFFIX = ".constants.safetensors"
LATENT_CHANNELS_IN = 8
LATENT_CHANNELS_OUT = 4
LATENT_SIZE = 32
MEL_FRAMES = 3000  # 30 s at a 10 ms hop


class AotUnavailableError(RuntimeError):
    """The packages cannot be built or loaded here; the engine falls back to torch.compile."""


@dataclass(frozen=True)
class AotKey:
    """What a package depends on; any change means another package."""

    torch_version: str
    device: str  # GPU name, or "cpu"
    capability: str  # CUDA compute capability, "" on CPU
    dtype: str
    batch_size: int
    weights: str  # digest of the source weights' stamp (names, sizes, modification times)
    format: int = PACKAGE_FORMAT

    @classmethod
    def for_models(
        cls, layout: ModelsLayout, device: torch.device, dtype: torch.dtype, batch_size: int
    ) -> AotKey:
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
        else:
            name, capability = device.type, ""
        verified = verified_digests(layout.root)
        stamp = json.dumps(
            {
                model: [verified.get(path) or fingerprint([path], dtype) for path in files]
                for model, files in source_files(layout).items()
            },
            sort_keys=True,
        )
        return cls(
            torch_version=torch.__version__,
            device=name,
            capability=capability,
            dtype=str(dtype).removeprefix("torch."),
            batch_size=batch_size,
            weights=hashlib.sha256(stamp.encode()).hexdigest()[:16],
        )

    @property
    def digest(self) -> str:
        """The directory name: one per key."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def verified_digests(root: Path) -> dict[Path, str]:
    """SHA-256 of the files the worker's weight sync verified and that are unchanged since
    (its stamp: size and mtime). A content digest makes the key the same on every instance, so
    packages built by one can serve all; files without one are stamped by name, size and mtime
    (the weight cache's fingerprint)."""
    try:
        stamps = json.loads((root / VERIFIED_STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    digests = {}
    for relative, stamp in stamps.items() if isinstance(stamps, dict) else ():
        path = root / relative
        try:
            size, mtime_ns, sha256 = stamp
            stat = path.stat()
        except (OSError, TypeError, ValueError):
            continue
        if (stat.st_size, stat.st_mtime_ns) == (size, mtime_ns):
            digests[path] = f"sha256:{sha256}"
    return digests


def source_files(layout: ModelsLayout) -> dict[str, list[Path]]:
    """The official files each package is built from (what the key stamps)."""
    vae_weights = layout.vae_dir / "diffusion_pytorch_model.safetensors"
    if not vae_weights.is_file():
        vae_weights = layout.vae_dir / "diffusion_pytorch_model.bin"
    whisper = [
        path
        for name in ("config.json", "pytorch_model.bin", "model.safetensors")
        if (path := layout.whisper_dir / name).is_file()
    ]
    return {
        UNET: [layout.unet_config, layout.unet_weights],
        DECODER: [layout.vae_dir / "config.json", vae_weights],
        WHISPER: [*whisper, layout.whisper_dir / "preprocessor_config.json"],
    }


def missing_toolchain(device: torch.device) -> str | None:
    """What this host lacks to build packages (or to torch.compile), None when nothing: a C++
    compiler, and for CUDA the toolkit's headers. The worker image has neither; its workers
    only load packages built elsewhere (downloaded from the weights bucket)."""
    compiler = os.environ.get("CXX") or "c++"
    if shutil.which(compiler) is None and shutil.which("g++") is None:
        return "no C++ compiler"
    if device.type == "cuda":
        from torch.utils.cpp_extension import CUDA_HOME

        includes = [Path(CUDA_HOME) / "include"] if CUDA_HOME else []
        if os.environ.get("CUDA_INC_PATH"):
            includes.append(Path(os.environ["CUDA_INC_PATH"]))
        if not any((include / "cuda.h").is_file() for include in includes):
            return "no CUDA toolkit headers (cuda.h)"
    return None


def packages_dir(cache_dir: Path, key: AotKey) -> Path:
    return cache_dir / "aot" / key.digest


def example_inputs(
    name: str, batch: int, device: torch.device, dtype: torch.dtype, *, mel_bins: int = 80
) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the shapes a package is built for (and is run with once on load)."""
    shapes: dict[str, list[tuple[int, ...]]] = {
        UNET: [
            (batch, LATENT_CHANNELS_IN, LATENT_SIZE, LATENT_SIZE),
            (batch, TOKENS_PER_FRAME, D_MODEL),
        ],
        DECODER: [(batch, LATENT_CHANNELS_OUT, LATENT_SIZE, LATENT_SIZE)],
        WHISPER: [(batch, mel_bins, MEL_FRAMES)],
    }
    return tuple(torch.zeros(shape, device=device, dtype=dtype) for shape in shapes[name])


def constants_path(package: Path) -> Path:
    return package.with_name(package.stem + CONSTANTS_SUFFIX)


def package_file_names() -> list[str]:
    """What a package directory holds besides its manifest: each model's package and weights,
    and the mel filters."""
    packages = [f"{name}.pt2" for name in MODELS]
    return [*packages, *(f"{name}{CONSTANTS_SUFFIX}" for name in MODELS), MEL_FILTERS]


def package_files(directory: Path) -> dict[str, str]:
    """{file name: sha256} of a complete package directory, from its manifest (the files to
    copy, in the order to copy them: the manifest last)."""
    manifest = json.loads((directory / MANIFEST).read_text())
    return {**manifest["sha256"], MANIFEST: ""}


def find_packages(cache_dir: Path, key: AotKey) -> Path | None:
    """The packages for `key`, or None where they are absent or do not match it.

    Checks the manifest's key and every file's size; a file damaged in place is caught when
    it is loaded (`aot_load.load_models` raises `AotUnavailableError`).
    """
    directory = packages_dir(cache_dir, key)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("AOT manifest in %s unreadable: %s", directory, error)
        return None
    if manifest.get("key") != asdict(key):
        log.warning("AOT packages in %s were built for another key; ignored", directory)
        return None
    for name in package_file_names():
        expected = manifest.get("files", {}).get(name)
        path = directory / name
        if expected is None or not path.is_file() or path.stat().st_size != expected:
            log.warning("AOT package %s missing or truncated; ignored", path)
            return None
    return directory
