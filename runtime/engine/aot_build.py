"""Building the AOTInductor packages (`aot`): export each model at its static shapes, compile
it with Inductor and the system g++, and move the finished directory into place.

Minutes on a GPU, and it needs a C++ compiler (and on CUDA the toolkit's headers): done once per
card and checkpoint, ahead by `build-artifacts` / `publish_aot`, or by an engine that may build
its own on first start. The directory is built beside and renamed into place, so a reader sees
all of it or none.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from runtime.engine import aot_prepare
from runtime.engine.aot import (
    DECODER,
    MANIFEST,
    MEL_FILTERS,
    UNET,
    WHISPER,
    AotKey,
    constants_path,
    example_inputs,
    package_file_names,
    packages_dir,
)
from runtime.engine.aot_prepare import PrepareSpec
from runtime.engine.layout import ModelsLayout
from runtime.fileio import file_sha256

log = logging.getLogger(__name__)

# Autotuned when packages are built ahead (`build-artifacts`, `publish_aot`), not on an engine's
# first start: autotuning made the H100 decoder about 8 % faster per frame, for a build of
# minutes more, paid once per card.
AUTOTUNED_AHEAD = (DECODER,)
WEIGHTS_OUTSIDE = {"aot_inductor.package_constants_in_so": False}
# Extra g++ flags for the generated libraries (shell words; set but empty: none). What made
# packages load on the H100 image was the compiler (see compiler_wrapper), not a flag: Inductor's
# own command with the system g++ loads too. The default is the flag the full-size packages
# were measured with there; it hides the library's inline C++ template code from other libraries.
CXX_FLAGS_ENV = "MUSETALK_AOT_CXX_FLAGS"
DEFAULT_CXX_FLAGS = ("-fvisibility-inlines-hidden",)
# Packages one model into a path (the build's options and compiler flags bound).
Packager = Callable[[torch.nn.Module, tuple[torch.Tensor, ...], Path], None]


def autotune_options() -> dict[str, Any]:
    """Inductor's options for an autotuned package: torch.compile's `max-autotune-no-cudagraphs`
    mode, i.e. autotuned convolution and matmul templates and coordinate-descent tuning of the
    pointwise and reduction kernels (the decoder's GroupNorms). `max_autotune` alone leaves the
    latter at their heuristic configs: the H100 decoder ran 1.35 ms/frame from such a package,
    1.31 from one built with these options (bench/results/2026-12-07-h100-worker-aot.md)."""
    from torch._inductor import list_mode_options

    return dict(list_mode_options("max-autotune-no-cudagraphs"))


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
    GPU; `inductor_options` per model name (e.g. {"vae_decoder": autotune_options()});
    `compiler_flags` are appended to every g++ command (see `compiler_wrapper`); `prepare`
    adds preparation's packages (`aot_prepare`) to the same directory and manifest.
    A directory already in place (another process won the race) is kept as it is.
    """
    from runtime.engine.weight_cache import WeightCache

    final = packages_dir(cache_dir, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    cache = WeightCache(cache_dir)
    seconds: dict[str, float] = {}
    options = inductor_options or {}
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key.digest}."))

    def packager(name: str) -> Packager:
        return lambda module, inputs, path: package_model(
            module, inputs, path, options.get(name, {}), seconds, compiler_flags=compiler_flags
        )

    try:
        extractor = _package_speak_models(
            layout, staging, key.batch_size, device, dtype, cache, packager
        )
        prepared = None
        if prepare is not None:
            prepared = aot_prepare.build(
                staging, layout, device, dtype, prepare, packager(""), cache=cache
            )
        manifest = {
            "key": asdict(key),
            **_file_sizes_and_digests(
                staging, [*package_file_names(), *(prepared["files"] if prepared else [])]
            ),
            "mel": {"n_fft": extractor.n_fft, "hop_length": extractor.hop_length},
            "inductor_options": {name: dict(value) for name, value in options.items()},
            "compiler": build_compiler(),
            "compiler_flags": list(compiler_flags),
            "build_s": seconds,
            **({"prepare": prepared} if prepared else {}),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        _move_into_place(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildReport(final, seconds)


def _package_speak_models(
    layout: ModelsLayout,
    staging: Path,
    batch: int,
    device: torch.device,
    dtype: torch.dtype,
    cache: Any,
    packager: Callable[[str], Packager],
) -> Any:
    """The UNet step, decoder and Whisper encoder packages and the mel filters into `staging`,
    one eager model in memory at a time; the Whisper feature extractor (its mel settings)."""
    from runtime.engine.audio import AudioEncoder
    from runtime.engine.latents import Generator, LatentCodec

    generator = Generator(layout.unet_config, layout.unet_weights, device, dtype, cache=cache)
    packager(UNET)(
        UNetStep(generator.unet),
        example_inputs(UNET, batch, device, dtype),
        staging / f"{UNET}.pt2",
    )
    del generator
    codec = LatentCodec(layout.vae_dir, device, dtype, cache=cache)
    packager(DECODER)(
        DecoderStep(codec.vae, codec.scaling_factor),
        example_inputs(DECODER, batch, device, dtype),
        staging / f"{DECODER}.pt2",
    )
    del codec
    audio = AudioEncoder(layout.whisper_dir, device, dtype, cache=cache)
    extractor = audio.extractor
    packager(WHISPER)(
        WhisperStates(audio.encoder),
        example_inputs(WHISPER, 1, device, dtype, mel_bins=extractor.feature_size),
        staging / f"{WHISPER}.pt2",
    )
    np.save(staging / MEL_FILTERS, np.asarray(extractor.mel_filters, dtype=np.float32))
    return extractor


def _file_sizes_and_digests(staging: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The manifest's `files` (sizes, checked on every find) and `sha256` (checked on download)."""
    return {
        "files": {name: (staging / name).stat().st_size for name in names},
        "sha256": {name: file_sha256(staging / name) for name in names},
    }


def _move_into_place(staging: Path, final: Path) -> None:
    """Rename the finished directory into place; one already there (another process's) wins."""
    try:
        os.replace(staging, final)
    except OSError:
        if not (final / MANIFEST).is_file():
            raise
        log.info("AOT packages %s were built by another process meanwhile", final.name)


def package_model(
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    options: Mapping[str, Any],
    seconds: dict[str, float],
    *,
    compiler_flags: Sequence[str] = (),
) -> None:
    """Export `module` at `inputs`, compile it into the package `path` and write its weights
    beside it; export and compile seconds into `seconds`."""
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
