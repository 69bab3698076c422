"""Loading the models for `MuseTalkEngine.load`: device and dtype, the weights (through the
weight cache), and the choice between AOTInductor packages and the eager models (which the
engine may then `torch.compile`), and the face and sync models."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from runtime.engine import aot, aot_adapters, aot_build, aot_load
from runtime.engine.audio import AudioEncoder
from runtime.engine.batch_sizes import static_batch_size
from runtime.engine.engine_contract import WeightsKind
from runtime.engine.face_sync_protocols import FaceLocatorLike, FaceParserLike, SyncScorerLike
from runtime.engine.latents import Generator, LatentCodec
from runtime.engine.layout import ModelsLayout
from runtime.engine.stage_timing import timed
from runtime.engine.weight_cache import WeightCache, default_cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModels:
    """What `load_models` loaded; `packages` is the AOT packages' directory where they run."""

    generator: Generator | aot_adapters.AotGenerator
    codec: LatentCodec | aot_adapters.AotCodec
    audio_encoder: AudioEncoder | aot_adapters.AotAudioEncoder
    locator: FaceLocatorLike
    parser: FaceParserLike
    scorer: SyncScorerLike | None
    weights: WeightsKind
    layout: ModelsLayout
    cache: WeightCache
    packages: Path | None
    compile_models: bool  # False where this host cannot compile (the models run eager)


def load_models(
    models_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
    *,
    locator: FaceLocatorLike | None,
    parser: FaceParserLike | None,
    scorer: SyncScorerLike | None,
    compile_models: bool,
    aot_packages: bool,
    cache_dir: Path,
    timings: dict[str, float],
) -> LoadedModels:
    """Every model from the official layout (the given face parts instead of loading them);
    each stage's time goes to `timings`. See `MuseTalkEngine.load` for the AOT choice."""
    layout = ModelsLayout(models_dir)
    weights = layout.weights_kind()
    if weights == "random":
        log.warning(
            "models in %s are RANDOM weights (make-weights): output is not a real lip sync",
            models_dir,
        )
    cache = WeightCache(cache_dir)
    packaged = (
        aot_models(layout, cache, device, dtype, timings)
        if compile_models and aot_packages
        else None
    )
    generator: Generator | aot_adapters.AotGenerator
    codec: LatentCodec | aot_adapters.AotCodec
    audio_encoder: AudioEncoder | aot_adapters.AotAudioEncoder
    if packaged is not None:
        generator, codec = packaged.generator, packaged.codec
        audio_encoder = packaged.audio_encoder
    else:
        if compile_models and (lacking := aot.missing_toolchain(device)):
            log.warning("cannot compile here (%s): the models run eager", lacking)
            compile_models = False
        # The cached tensors stream onto the device while the model libraries import.
        cache.prefetch(["unet", "vae", "whisper_encoder"], device, dtype)
        with timed(timings, "imports"):
            preload_libraries()
        with timed(timings, "unet", device):
            generator = Generator(
                layout.unet_config, layout.unet_weights, device, dtype, cache=cache
            )
        with timed(timings, "vae", device):
            codec = LatentCodec(layout.vae_dir, device, dtype, cache=cache)
        with timed(timings, "whisper", device):
            audio_encoder = AudioEncoder(layout.whisper_dir, device, dtype, cache=cache)
    start = time.perf_counter()
    if locator is None or parser is None or (scorer is None and layout.syncnet.is_file()):
        from runtime.engine import faces

        locator = locator or faces.FaceLocator.load(models_dir, device)
        parser = parser or faces.FaceParser.load(models_dir, device)
        if scorer is None and layout.syncnet.is_file():
            from runtime.engine import sync

            scorer = sync.SyncScorer.load(models_dir, device)
    timings["faces"] = (time.perf_counter() - start) * 1000
    return LoadedModels(
        generator=generator,
        codec=codec,
        audio_encoder=audio_encoder,
        locator=locator,
        parser=parser,
        scorer=scorer,
        weights=weights,
        layout=layout,
        cache=cache,
        packages=None if packaged is None else packaged.directory,
        compile_models=compile_models,
    )


def aot_packages_dir(
    models_dir: Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> tuple[aot.AotKey, Path]:
    """The key and local directory of the AOT packages `load(models_dir, device, dtype,
    compile_models=True)` uses (with the default cache directory): where a worker puts the
    packages it downloads."""
    device, dtype = device_and_dtype(device, dtype)
    key = aot.AotKey.for_models(
        ModelsLayout(models_dir), device, dtype, static_batch_size(device, dtype)
    )
    return key, aot.packages_dir(default_cache_dir(models_dir), key)


def device_and_dtype(
    device: torch.device | str | None, dtype: torch.dtype | str | None
) -> tuple[torch.device, torch.dtype]:
    """Strings too: the worker and local mode pass MUSETALK_DEVICE / MUSETALK_DTYPE as set."""
    device = torch.device(device) if isinstance(device, str) else device
    dtype = _torch_dtype(dtype) if isinstance(dtype, str) else dtype
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    return device, dtype


def aot_models(
    layout: ModelsLayout,
    cache: WeightCache,
    device: torch.device,
    dtype: torch.dtype,
    timings: dict[str, float],
) -> aot_load.AotModels | None:
    """The AOT packages for this card, built first when absent; None (torch.compile instead)
    where they cannot be built or loaded. A package that does not load is removed, so the next
    start builds it again."""
    batch = static_batch_size(device, dtype)
    key = aot.AotKey.for_models(layout, device, dtype, batch)
    directory = aot.find_packages(cache.directory, key)
    if directory is None and (lacking := aot.missing_toolchain(device)):
        log.warning("no AOT packages for %s and none can be built here (%s)", key, lacking)
        return None
    if directory is None:
        log.info("building AOT packages for %s (once per card, torch and weights)", key)
        try:
            with timed(timings, "aot_build", device):
                directory = aot_build.build_packages(
                    layout,
                    cache.directory,
                    key,
                    device,
                    dtype,
                    compiler_flags=aot_build.compiler_flags_from_env(),
                ).directory
        except Exception:  # export/Inductor/C++ compiler errors take many types
            log.warning("AOT packages not built; compiling with torch.compile", exc_info=True)
            return None

    def eager_codec() -> LatentCodec:
        return LatentCodec(layout.vae_dir, device, dtype, cache=cache)

    if not aot_load.begin_load_attempt(directory):
        log.warning(
            "an earlier load of the AOT packages in %s never finished (the process died): "
            "not loading them again; using torch.compile (rebuild with build-artifacts --force)",
            directory,
        )
        return None
    try:
        with timed(timings, "aot_load", device):
            models = aot_load.load_models(directory, device, dtype, batch, eager_codec=eager_codec)
        aot_load.end_load_attempt(directory)
        return models
    except aot.AotUnavailableError as error:
        log.warning(
            "AOT packages in %s unusable (%s); removed, using torch.compile", directory, error
        )
        shutil.rmtree(directory, ignore_errors=True)
        return None


def _quiet_hub_progress() -> None:
    """Loading local weights needs no progress bars or hub advice in worker logs."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()


def preload_libraries() -> None:
    """Import the model libraries `load` needs (diffusers, transformers), once per process.

    On the benchmark's H100 image this took 9 s, most of a cold start (the weights themselves
    load in ~0.1 s from the cache). A worker can call it on a thread while it fetches or checks
    the weights, so that `load` only pays for the weights and the first batch.
    """
    _quiet_hub_progress()
    from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401
    from transformers import WhisperFeatureExtractor, WhisperModel  # noqa: F401


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r} (e.g. float16, float32)")
    return dtype
