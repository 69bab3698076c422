"""The preparation benchmark's variants: `MODE:DTYPE[:OPS][+FLAG...]` parsed and named, the
default pair, and the engine set as a variant's flags say (compiled or AOT-packaged models)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from runtime.engine import aot, aot_build, aot_prepare
from runtime.engine.avatar_preparation import PREPARE_CHUNK_FRAMES
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.faces.locator import LOCATE_BATCH, FaceLocator
from runtime.engine.faces.precision import default_face_dtype
from runtime.engine.layout import ModelsLayout

MODES = ("pipelined", "sequential", "serial")
# +FLAG switches of a variant (see `configure`)
FLAGS = ("onepass", "vae", "compile", "aot")

Variant = tuple[str, torch.dtype, str, frozenset[str]]  # mode, face dtype, ops, flags


def parse_variant(text: str) -> Variant:
    spec, *flags = text.split("+")
    mode, dtype, ops = [*spec.split(":"), "device"][:3]
    if (
        mode not in MODES
        or dtype not in ("float32", "float16", "bfloat16")
        or ops not in ("host", "device")
        or any(flag not in FLAGS for flag in flags)
    ):
        raise argparse.ArgumentTypeError(
            f"variant {text!r}: MODE:DTYPE[:OPS][+FLAG...], e.g. serial:float16:device+onepass; "
            f"MODE one of {', '.join(MODES)}, FLAG one of {', '.join(FLAGS)}"
        )
    return mode, getattr(torch, dtype), ops, frozenset(flags)


def variant_name(
    mode: str, dtype: torch.dtype, ops: str, flags: frozenset[str] = frozenset()
) -> str:
    name = f"{mode}:{str(dtype).removeprefix('torch.')}:{ops}"
    return name + "".join(f"+{flag}" for flag in FLAGS if flag in flags)


def default_variants(device: torch.device) -> list[Variant]:
    """Without `--variants`: serial and pipelined, the device's face dtype and ops."""
    default_ops = "device" if device.type == "cuda" else "host"
    return [
        (mode, default_face_dtype(device), default_ops, frozenset())
        for mode in ("serial", "pipelined")
    ]


def configure(
    engine: MuseTalkEngine,
    flags: frozenset[str],
    compiled: dict[Any, Any],
    packages: Callable[[], tuple[Path, ModelsLayout]] | None = None,
) -> None:
    """Set the engine's models as a variant's flags say (each flag off unless named):
    `onepass` DWPose's crops and their mirror as one batch; `vae` the VAE encoder
    channels-last in fixed batches of a chunk's frames; `compile` S3FD and the VAE encoder
    through torch.compile (Inductor, default mode, as `MuseTalkEngine.compile_preparation`),
    compiled once per model (`compiled` keeps them) on the variant's warm-up. (cuDNN's
    autotuner is on in every CUDA preparation since the 2026-11-26 fast run, where it was a
    flag: DWPose 1.7 -> 0.7 ms/frame.) `aot`: S3FD and the VAE encoder from AOT packages
    (`aot_prepare`, what a worker without a compiler loads) that `packages()` builds for the
    avatar's frame size."""
    locator = engine.locator
    if not isinstance(locator, FaceLocator):  # the flags tune the real face models
        raise TypeError(f"preparation variants need a FaceLocator, not {type(locator).__name__}")
    detector, landmarker = locator.detector, locator.landmarker
    detector.packaged = {}
    landmarker.flip_in_one_batch = "onepass" in flags
    fixed = "vae" in flags or "compile" in flags
    backend = "inductor" if engine.device.type == "cuda" else "eager"  # CPU smoke: Dynamo only
    engine.codec.tune_encoder(
        channels_last=fixed,
        batch=(PREPARE_CHUNK_FRAMES if engine.device.type == "cuda" else 1) if fixed else None,
        compile_backend=backend if "compile" in flags else None,
    )
    if "compile" in flags:
        if id(detector) not in compiled:
            detector.compile(backend=backend)
            compiled[id(detector)] = detector.run_net
        detector.run_net = compiled[id(detector)]
    else:
        detector.run_net = detector.net
    if "aot" in flags and packages is not None:
        directory, layout = packages()
        engine.prepare_packages_ms = aot_prepare.attach(
            directory,
            engine.codec,  # type: ignore[arg-type]  # an AotCodec passes its eager codec's
            detector,
            layout,
            engine.device,
        )


def prepare_packages(
    engine: MuseTalkEngine, models: Path, frame_size: tuple[int, int], face_dtype: torch.dtype
) -> tuple[Path, dict[str, float]]:
    """Preparation's AOT packages for this frame size and face dtype in a new directory (as
    `build-artifacts` builds them beside the speak packages), and the build's seconds."""
    directory = Path(tempfile.mkdtemp(prefix="prepare-aot-"))
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    spec = aot_prepare.PrepareSpec(face_dtype, PREPARE_CHUNK_FRAMES, LOCATE_BATCH, (frame_size,))
    section = aot_prepare.build(
        directory,
        ModelsLayout(models),
        engine.device,
        engine.dtype,
        spec,
        lambda module, inputs, path: aot_build.package_model(module, inputs, path, {}, seconds),
    )
    (directory / aot.MANIFEST).write_text(json.dumps({"prepare": section}))
    seconds["total"] = round(time.perf_counter() - start, 1)
    return directory, seconds
