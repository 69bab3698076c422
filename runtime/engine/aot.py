"""AOTInductor packages of the per-frame models, so a compiled engine starts in seconds.

`torch.compile` with cached kernels still traces every model with Dynamo in each new process
(10.7 s of a 23.8 s compiled start on an H100), and the diffusers/transformers imports cost
another 6-8 s on the benchmark image. An AOTInductor package is the compiled model itself: a
shared library exported once with `torch.export` at the engine's static batch size, its weights
in a safetensors file beside it, loaded later with torch's C++ package loader, which needs
neither Dynamo nor diffusers nor transformers. On CPU a fresh process is ready in about 3 s this
way, and on an H100 2.5-3.1 s after `import torch`.
Libraries built with the H100 image's `$CXX` crashed there on load inside std::regex; built with
the system g++ (`compiler_wrapper`) they load (bench/results/2026-11-26-h100-coldstart-2.md,
-3.md). The engine uses this module when asked (`MuseTalkEngine.load(..., aot_packages=True)`).

Three packages, one per model the speak path runs: the UNet step (timestep 0), the VAE decoder
including the uint8 conversion, and the Whisper encoder (one static 30 s window) with the five
hidden states stacked. The log-mel features are computed here in torch with the extractor's own
mel filters (saved beside the packages), exactly as `WhisperFeatureExtractor`'s torch path does.
Preparation still needs the VAE encoder: `AotCodec` loads the eager codec (and diffusers) on
its first use.

Packages live in the weight cache directory under `aot/<key digest>/`; the key is the torch
version, GPU name and capability, dtype, batch size and the stamp of the source weights, so a
package from another build, card or checkpoint is never loaded (it would fail or be wrong).
The directory is built beside and renamed into place, so a reader sees all of it or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from runtime.engine import aot_prepare
from runtime.engine.aot_prepare import PrepareSpec
from runtime.engine.audio import (
    D_MODEL,
    HIDDEN_STATES,
    SEGMENT_SAMPLES,
    TOKENS_PER_FRAME,
    WindowPlan,
    frame_windows,
)
from runtime.engine.layout import VERIFIED_STAMP_NAME, ModelsLayout
from runtime.engine.weight_cache import fingerprint
from runtime.fileio import file_sha256

log = logging.getLogger(__name__)

# Bumped whenever the exported graphs or the files change (2: upsamplers folded,
# runtime/engine/upsample.py; 3: weights beside the library, see CONSTANTS_SUFFIX; 4: built
# with the system g++, see compiler_wrapper: format 3 libraries crash on the H100 image).
PACKAGE_FORMAT = 4
UNET = "unet"
DECODER = "vae_decoder"
WHISPER = "whisper_encoder"
MODELS = (UNET, DECODER, WHISPER)
# Built with Inductor's max_autotune when packages are built ahead (`build-artifacts`,
# `publish_aot`), not on an engine's first start: on H100s the AOT decoder ran 1.35 ms/frame
# against 1.47 built without it (GPU path 533 against 494 frames/s), for a build of minutes
# more, paid once per card (bench/results/2026-11-26-h100-autotune.md).
AUTOTUNED_AHEAD = (DECODER,)
MANIFEST = "manifest.json"
LOAD_ATTEMPT = ".load-attempt"  # pid of a load in progress; left behind if the process died
MEL_FILTERS = "mel_filters.npy"
# Each package's weights, in a safetensors file beside it, handed to the runner on load (user
# managed: no copy). Inductor's default embeds them in the shared library (1.7 GB for the UNet,
# written out again from the archive on every load).
CONSTANTS_SUFFIX = ".constants.safetensors"
WEIGHTS_OUTSIDE = {"aot_inductor.package_constants_in_so": False}
# Extra g++ flags for the generated libraries (shell words; set but empty: none). What made
# packages load on the H100 image was the compiler (see compiler_wrapper), not a flag: Inductor's
# own command with the system g++ loads too. The default is the flag the full-size packages
# were measured with there (bench/results/2026-11-26-h100-coldstart-3.md); it hides the
# library's inline C++ template code from other libraries.
CXX_FLAGS_ENV = "MUSETALK_AOT_CXX_FLAGS"
DEFAULT_CXX_FLAGS = ("-fvisibility-inlines-hidden",)
LATENT_CHANNELS_IN = 8
LATENT_CHANNELS_OUT = 4
LATENT_SIZE = 32
MEL_FRAMES = 3000  # 30 s at a 10 ms hop
# CUDA graphs around the loaded package. Not measured with packages yet (they did not load on the
# H100); under torch.compile CUDA graphs took the UNet from 629 to 406 ms per 750 frames and did
# not help the decoder (bench/results/2026-11-26-h100.md).
DEFAULT_CUDA_GRAPHS = (UNET,)
# Overrides DEFAULT_CUDA_GRAPHS: comma-separated model names, empty for none.
CUDA_GRAPHS_ENV = "MUSETALK_AOT_CUDA_GRAPHS"
LOADER_ENV = "MUSETALK_AOT_LOADER"  # "direct" (default) or "package_api" (see load_runner)


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
        verified = _verified_digests(layout.root)
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


def _verified_digests(root: Path) -> dict[Path, str]:
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


# ---------------------------------------------------------------------------------------- build


class UNetStep(torch.nn.Module):
    """`Generator.step` as a module: latents [B, 8, 32, 32] + audio [B, 50, 384] at t=0."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, latents: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        timestep = torch.zeros(latents.shape[0], dtype=torch.long, device=latents.device)
        sample: torch.Tensor = self.unet(latents, timestep, encoder_hidden_states=audio).sample
        return sample


class DecoderStep(torch.nn.Module):
    """`LatentCodec.decode` as a module: latents [B, 4, 32, 32] -> uint8 RGB [B, 3, 256, 256]."""

    def __init__(self, vae: Any, scaling_factor: float) -> None:
        super().__init__()
        self.decoder = vae.decoder
        self.post_quant_conv = vae.post_quant_conv
        self.inverse_scale = 1 / scaling_factor

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        from runtime.engine.latents import images_to_uint8

        scaled = latents * self.inverse_scale
        if self.post_quant_conv is not None:
            scaled = self.post_quant_conv(scaled)
        return images_to_uint8(self.decoder(scaled))


class WhisperStates(torch.nn.Module):
    """The encoder's five hidden states stacked as `AudioEncoder.features` keeps them."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(mel, output_hidden_states=True)
        states = [*encoded.hidden_states[:4], encoded.last_hidden_state]
        return torch.stack(states, dim=2)  # [b, 1500, 5, 384]


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


@dataclass(frozen=True)
class BuildReport:
    directory: Path
    seconds: dict[str, float]


def build_packages(
    layout: ModelsLayout,
    cache_dir: Path,
    key: AotKey,
    device: torch.device,
    dtype: torch.dtype,
    *,
    inductor_options: Mapping[str, Mapping[str, Any]] | None = None,
    compiler_flags: Sequence[str] = DEFAULT_CXX_FLAGS,
    prepare: PrepareSpec | None = None,
) -> BuildReport:
    """Export, compile and package the three models into `packages_dir(cache_dir, key)`.

    Loads the eager models (diffusers, transformers) through the weight cache. Minutes on a
    GPU; `inductor_options` per model name (e.g. {"vae_decoder": {"max_autotune": True}});
    `compiler_flags` are appended to every g++ command (see `compiler_wrapper`); `prepare`
    adds preparation's packages (`aot_prepare`) to the same directory and manifest.
    A directory already in place (another process won the race) is kept as it is.
    """
    from runtime.engine.audio import AudioEncoder
    from runtime.engine.latents import Generator, LatentCodec
    from runtime.engine.weight_cache import WeightCache

    final = packages_dir(cache_dir, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    cache = WeightCache(cache_dir)
    seconds: dict[str, float] = {}
    options = inductor_options or {}
    batch = key.batch_size
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key.digest}."))
    try:
        generator = Generator(layout.unet_config, layout.unet_weights, device, dtype, cache=cache)
        _package(
            UNetStep(generator.unet),
            example_inputs(UNET, batch, device, dtype),
            staging / f"{UNET}.pt2",
            options.get(UNET, {}),
            seconds,
            compiler_flags=compiler_flags,
        )
        del generator
        codec = LatentCodec(layout.vae_dir, device, dtype, cache=cache)
        _package(
            DecoderStep(codec.vae, codec.scaling_factor),
            example_inputs(DECODER, batch, device, dtype),
            staging / f"{DECODER}.pt2",
            options.get(DECODER, {}),
            seconds,
            compiler_flags=compiler_flags,
        )
        del codec
        audio = AudioEncoder(layout.whisper_dir, device, dtype, cache=cache)
        extractor = audio.extractor
        _package(
            WhisperStates(audio.encoder),
            example_inputs(WHISPER, 1, device, dtype, mel_bins=extractor.feature_size),
            staging / f"{WHISPER}.pt2",
            options.get(WHISPER, {}),
            seconds,
            compiler_flags=compiler_flags,
        )
        np.save(staging / MEL_FILTERS, np.asarray(extractor.mel_filters, dtype=np.float32))
        prepared = None
        if prepare is not None:
            prepared = aot_prepare.build(
                staging,
                layout,
                device,
                dtype,
                prepare,
                lambda module, inputs, path: _package(
                    module, inputs, path, {}, seconds, compiler_flags=compiler_flags
                ),
                cache=cache,
            )
        names = [*package_file_names(), *(prepared["files"] if prepared else [])]
        manifest = {
            "key": asdict(key),
            "files": {name: (staging / name).stat().st_size for name in names},
            "sha256": {name: file_sha256(staging / name) for name in names},
            "mel": {"n_fft": extractor.n_fft, "hop_length": extractor.hop_length},
            "inductor_options": {name: dict(value) for name, value in options.items()},
            "compiler": build_compiler(),
            "compiler_flags": list(compiler_flags),
            "build_s": seconds,
            **({"prepare": prepared} if prepared else {}),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        try:
            os.replace(staging, final)
        except OSError:
            if not (final / MANIFEST).is_file():
                raise
            log.info("AOT packages %s were built by another process meanwhile", final.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildReport(final, seconds)


def _package(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    options: Mapping[str, Any],
    seconds: dict[str, float],
    *,
    compiler_flags: Sequence[str] = (),
) -> None:
    name = path.stem
    start = time.perf_counter()
    with torch.no_grad():
        exported = torch.export.export(module.eval(), inputs)
    seconds[f"{name}_export"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    configs: dict[str, Any] = {**options, **WEIGHTS_OUTSIDE}
    with tempfile.TemporaryDirectory(prefix="aot-cxx-") as scratch:
        configs["cpp.cxx"] = (str(compiler_wrapper(Path(scratch), compiler_flags)),)
        torch._inductor.aoti_compile_and_package(
            exported, package_path=str(path), inductor_configs=configs
        )
    save_file(exported_constants(exported), str(constants_path(path)))
    seconds[f"{name}_compile"] = round(time.perf_counter() - start, 2)


def build_compiler() -> str:
    """The system `g++` on PATH (links libstdc++ dynamically, as torch does)."""
    return shutil.which("g++") or "g++"


def compiler_flags_from_env() -> list[str]:
    """`MUSETALK_AOT_CXX_FLAGS` as a list of flags; `DEFAULT_CXX_FLAGS` when unset."""
    setting = os.environ.get(CXX_FLAGS_ENV)
    return list(DEFAULT_CXX_FLAGS) if setting is None else shlex.split(setting)


def compiler_wrapper(directory: Path, flags: Sequence[str], real: str | None = None) -> Path:
    """`directory/g++`: runs the real compiler with `flags` appended (linker flags, -Wl,... and
    -static-lib..., only where it links a shared library: on a precompiled header they make g++
    link). Named g++ because Inductor picks its options by the compiler's name.

    The real compiler is `build_compiler()`, never Inductor's default `$CXX`: the H100 image
    sets CXX to a g++ wrapper whose libraries carry a static libstdc++ with its symbols
    exported, and every package built that way crashed on load (std::regex, binding against
    torch's own libstdc++); the same package built with the system g++ loads.
    """
    compiler = real or build_compiler()
    linking = [flag for flag in flags if flag.startswith(("-Wl,", "-static-lib"))]
    compile_flags = shlex.join(flag for flag in flags if flag not in linking)
    link_flags = shlex.join(linking)
    wrapper = directory / "g++"
    directory.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" -shared "*) exec {compiler} "$@" {compile_flags} {link_flags} ;; esac\n'
        f'exec {compiler} "$@" {compile_flags}\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def exported_constants(exported: torch.export.ExportedProgram) -> dict[str, torch.Tensor]:
    """Every tensor the exported graph reads besides its inputs, by the name the runner asks
    for (`get_constant_fqns`): parameters, buffers and lifted constants."""
    named = {**exported.state_dict, **exported.constants}
    return {
        name: tensor.detach().clone().contiguous()  # one storage each, as safetensors needs
        for name, tensor in named.items()
        if isinstance(tensor, torch.Tensor)
    }


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


# ----------------------------------------------------------------------------------------- load


def find_packages(cache_dir: Path, key: AotKey) -> Path | None:
    """The packages for `key`, or None where they are absent or do not match it.

    Checks the manifest's key and every file's size; a file damaged in place is caught when
    it is loaded (`load_models` raises `AotUnavailableError`).
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


def begin_load_attempt(directory: Path) -> bool:
    """Mark a load of the packages in `directory` as begun; False when an earlier load never
    finished because its process died (a crash in a native loader cannot be caught: this way
    it costs one restart, not every one)."""
    marker = directory / LOAD_ATTEMPT
    try:
        pid = int(marker.read_text())
    except FileNotFoundError:
        pid = None
    except (OSError, ValueError):
        return False
    if pid is not None and pid != os.getpid() and not _alive(pid):
        return False
    try:
        marker.write_text(str(os.getpid()))
    except OSError:  # a read-only cache: load anyway, without the guard
        log.warning("AOT load marker %s not written", marker)
    return True


def end_load_attempt(directory: Path) -> None:
    (directory / LOAD_ATTEMPT).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class StaticRunner:
    """A loaded package at its static batch size: pads a short batch, splits a long one, and
    (on CUDA, when asked) replays a CUDA graph captured around the package's kernels.

    With a graph the result is a view of the graph's output buffer, valid until the next call
    (the engine consumes each batch before it runs the next one, as with torch.compile's
    CUDA graphs).
    """

    def __init__(
        self, runner: Callable[..., Any], example: Sequence[torch.Tensor], *, cuda_graph: bool
    ) -> None:
        self.runner = runner
        self.batch_size = example[0].shape[0]
        self.dtypes = [tensor.dtype for tensor in example]
        self.device = example[0].device
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs = [tensor.clone() for tensor in example]
        self._output: torch.Tensor | None = None
        if cuda_graph and self.device.type == "cuda":
            self._capture()

    def _capture(self) -> None:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up outside the graph, as torch's docs ask
            for _ in range(2):
                self.runner(*self._inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._output = self.runner(*self._inputs)
        self._graph = graph

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        count = inputs[0].shape[0]
        if count > self.batch_size:
            parts = [
                self(*(tensor[start : start + self.batch_size] for tensor in inputs)).clone()
                for start in range(0, count, self.batch_size)
            ]
            return torch.cat(parts)
        cast = [
            tensor.to(device=self.device, dtype=dtype)
            for tensor, dtype in zip(inputs, self.dtypes, strict=True)
        ]
        if count < self.batch_size:
            cast = [_pad_batch(tensor, self.batch_size) for tensor in cast]
        if self._graph is None:
            output: torch.Tensor = self.runner(*cast)
            return output[:count]
        for static, tensor in zip(self._inputs, cast, strict=True):
            static.copy_(tensor)
        self._graph.replay()
        assert self._output is not None  # noqa: S101  # nosec B101 (set with the graph)
        return self._output[:count]


def _pad_batch(tensor: torch.Tensor, size: int) -> torch.Tensor:
    padding = tensor[-1:].expand(size - tensor.shape[0], *tensor.shape[1:])
    return torch.cat([tensor, padding])


def load_runner(
    path: Path,
    device: torch.device,
    *,
    single_threaded: bool,
    constants: Callable[[], Mapping[str, torch.Tensor]] | None = None,
) -> Callable[..., Any]:
    """One package, loaded, with its weights: `constants()` gives them by name once the loader
    is built (their read overlaps its work); the runner uses these tensors in place, so they
    must be on `device` and stay alive with it.

    By default with torch's C++ package loader constructed here: `aoti_load_package`
    (`MUSETALK_AOT_LOADER=package_api`) wraps the same loader but imports torch._inductor and
    Dynamo and validates the archive (CPU, tiny weights: ready in 12.4 s against 2.3 s).
    """
    index = device.index if device.index is not None else -1
    weights: dict[str, torch.Tensor] = {}  # referenced by `run`: alive as long as the runner
    try:
        if os.environ.get(LOADER_ENV, "direct") != "package_api":
            loader = torch._C._aoti.AOTIModelPackageLoader(
                str(path), "model", single_threaded, 1, index
            )
            if constants is not None:
                weights = _constants_for(path, loader.get_constant_fqns(), constants())
                # (map, use the inactive buffer, check that every constant is given, use the
                # tensors as they are instead of copying them)
                loader.load_constants(weights, False, True, True)
            forward: Callable[[list[torch.Tensor]], list[torch.Tensor]] = loader.boxed_run
        else:
            compiled: Any = torch._inductor.aoti_load_package(
                str(path), run_single_threaded=single_threaded, device_index=index
            )
            if constants is not None:
                weights = _constants_for(path, compiled.get_constant_fqns(), constants())
                compiled.load_constants(weights, check_full_update=True, user_managed=True)
            forward = compiled.loader.boxed_run
    except Exception as error:  # a damaged zip, a missing symbol, a driver mismatch, ...
        raise AotUnavailableError(f"AOT package {path.name} not loadable: {error}") from error

    def run(*inputs: torch.Tensor, _weights: dict[str, torch.Tensor] = weights) -> torch.Tensor:
        (output,) = forward(list(inputs))
        return output

    return run


def _constants_for(
    path: Path, names: Sequence[str], constants: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    missing = [name for name in names if name not in constants]
    if missing:
        raise AotUnavailableError(f"{constants_path(path).name} lacks {missing[:3]}")
    return {name: constants[name] for name in names}


class ConstantsReader:
    """Reads the packages' weight files onto the device on one background thread, in the
    order asked, so the reads overlap the loader's work (extracting, dlopen, CUDA modules)."""

    def __init__(self, directory: Path, names: Sequence[str], device: torch.device) -> None:
        pool = ThreadPoolExecutor(1, thread_name_prefix="aot-constants")
        self._reads: dict[str, Future[dict[str, torch.Tensor]]] = {
            name: pool.submit(
                load_file, str(constants_path(directory / f"{name}.pt2")), device=str(device)
            )
            for name in names
        }
        pool.shutdown(wait=False)

    def wait_for_all(self) -> None:
        """Until every read has finished (a failed one raises later, in `constants`): a CUDA
        graph must not be captured while this thread copies weights to the device (another
        thread's work invalidates the capture; the engine would then drop the packages)."""
        futures_wait(list(self._reads.values()))

    def constants(self, name: str) -> dict[str, torch.Tensor]:
        try:
            return self._reads.pop(name).result()
        # absent, damaged, out of device memory
        except (OSError, RuntimeError, ValueError, SafetensorError) as error:
            raise AotUnavailableError(
                f"weights of AOT package {name} unreadable: {error}"
            ) from error


@dataclass
class AotModels:
    generator: AotGenerator
    codec: AotCodec
    audio_encoder: AotAudioEncoder
    directory: Path
    load_ms: dict[str, float]


def load_models(
    directory: Path,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int,
    *,
    eager_codec: Callable[[], Any],
    cuda_graphs: Sequence[str] | None = None,
) -> AotModels:
    """The three packages as the engine's generator, codec and audio encoder.

    Each model runs once here (and is captured in a CUDA graph where asked), so a damaged
    package fails now, in `load`, not in the first job. `eager_codec` builds the diffusers VAE
    for preparation, on first use.
    """
    graphs: Sequence[str]
    if cuda_graphs is None:
        setting = os.environ.get(CUDA_GRAPHS_ENV)
        graphs = DEFAULT_CUDA_GRAPHS if setting is None else setting.split(",")
    else:
        graphs = cuda_graphs
    timings: dict[str, float] = {}
    manifest = json.loads((directory / MANIFEST).read_text())
    reader = ConstantsReader(directory, MODELS, device)

    def runner(name: str, example: tuple[torch.Tensor, ...]) -> StaticRunner:
        start = time.perf_counter()
        graph = name in graphs and device.type == "cuda"
        if graph:
            reader.wait_for_all()
        loaded = load_runner(
            directory / f"{name}.pt2",
            device,
            single_threaded=graph,
            constants=lambda: reader.constants(name),
        )
        try:
            static = StaticRunner(loaded, example, cuda_graph=graph)
            if not graph:
                static(*example)
        except Exception as error:
            raise AotUnavailableError(f"AOT package {name} does not run: {error}") from error
        timings[name] = (time.perf_counter() - start) * 1000
        return static

    unet = runner(UNET, example_inputs(UNET, batch_size, device, dtype))
    decoder = runner(DECODER, example_inputs(DECODER, batch_size, device, dtype))
    mel_filters = torch.from_numpy(np.load(directory / MEL_FILTERS))
    mel_bins = mel_filters.shape[1]
    whisper = runner(WHISPER, example_inputs(WHISPER, 1, device, dtype, mel_bins=mel_bins))
    mel = LogMel(mel_filters, **manifest["mel"])
    return AotModels(
        generator=AotGenerator(unet, device, dtype),
        codec=AotCodec(decoder, eager_codec),
        audio_encoder=AotAudioEncoder(whisper, mel, device, dtype),
        directory=directory,
        load_ms=timings,
    )


# ------------------------------------------------------------------------------- engine parts


class AotGenerator:
    """`Generator` with the UNet step from its package."""

    def __init__(self, step: StaticRunner, device: torch.device, dtype: torch.dtype) -> None:
        self._step = step
        self.device = device
        self.dtype = dtype
        self.batch_size = step.batch_size

    @torch.inference_mode()
    def step(self, latents: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        return self._step(latents, audio_tokens)


class AotCodec:
    """`LatentCodec` whose decode runs the package; everything else (the VAE encoder that
    preparation uses) goes to the eager codec, built with diffusers on first use."""

    def __init__(self, decode: StaticRunner, eager_codec: Callable[[], Any]) -> None:
        self._decode = decode
        self._eager_codec = eager_codec
        self._eager: Any = None

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._decode(latents)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._eager is None:
            log.info("loading the eager VAE (for preparation) beside the AOT decoder")
            self._eager = self._eager_codec()
        return getattr(self._eager, name)


class LogMel:
    """Whisper's log-mel spectrogram, as `WhisperFeatureExtractor`'s torch path computes it
    (same STFT, the extractor's own mel filters), without importing transformers."""

    def __init__(self, mel_filters: torch.Tensor, *, n_fft: int, hop_length: int) -> None:
        self.mel_filters = mel_filters.float()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.window = torch.hann_window(n_fft)

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        """One segment (≤ 30 s at 16 kHz), zero-padded to 30 s -> [80, 3000] float32."""
        padded = np.zeros(SEGMENT_SAMPLES, dtype=np.float32)
        padded[: len(segment)] = segment[:SEGMENT_SAMPLES]
        waveform = torch.from_numpy(padded)
        stft = torch.stft(
            waveform, self.n_fft, self.hop_length, window=self.window, return_complex=True
        )
        magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
        log_spec = torch.clamp(self.mel_filters.T @ magnitudes, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0


class AotAudioEncoder:
    """`AudioEncoder` with the Whisper encoder from its package and no transformers import."""

    def __init__(
        self, encoder: StaticRunner, mel: LogMel, device: torch.device, dtype: torch.dtype
    ) -> None:
        self._encoder = encoder
        self.mel = mel
        self.device = device
        self.dtype = dtype

    @torch.inference_mode()
    def features(self, audio_16k: np.ndarray) -> torch.Tensor:
        """Spec §2.2-2.4: [steps, 5, 384] for the whole clip (1500 steps per 30 s segment)."""
        outputs = [
            self._encoder(self.mel(audio_16k[start : start + SEGMENT_SAMPLES])[None]).clone()
            for start in range(0, max(len(audio_16k), 1), SEGMENT_SAMPLES)
        ]
        return torch.cat(outputs).reshape(-1, HIDDEN_STATES, D_MODEL)

    def frame_tokens(self, audio_16k: np.ndarray, fps: float) -> torch.Tensor:
        return frame_windows(self.features(audio_16k), WindowPlan.of(len(audio_16k), fps))
