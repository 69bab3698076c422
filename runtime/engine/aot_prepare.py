"""AOTInductor packages for preparation's compiled networks: S3FD per frame size and the VAE
encoder, so a worker (whose image has no C++ compiler) prepares avatars as fast as
`MuseTalkEngine.compile_preparation` does where one is.

Built beside the speak packages (`aot_build.build_packages(..., prepare=PrepareSpec(...))`,
listed in the same manifest, so `publish_aot` uploads them and the workers' `ArtifactSync`
downloads them with the rest); the engine attaches them when it loads AOT packages
(`MuseTalkEngine.use_prepare_packages`). Static shapes, as `compile_preparation`'s graphs:

* `vae_encoder.pt2`: the encoder's posterior parameters for a chunk's masked and reference
  crops (2 x PREPARE_CHUNK_FRAMES images of 256x256, the engine's dtype);
* `s3fd_h{H}_w{W}.pt2` per frame-size bucket: a chunk of uint8 BGR frames to each frame's
  top face score and its box (the network and the pick on the device, `S3FD._strongest`), in
  the face models' dtype. A frame size without a package runs eager; the S3FD weights are one
  file shared by every size.

DWPose and BiSeNet stay eager (0.6-0.9 ms/frame each on an H100: little left to win).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file

from runtime.engine.layout import ModelsLayout

if TYPE_CHECKING:
    from runtime.engine.faces.s3fd import S3FD
    from runtime.engine.latents import LatentCodec

log = logging.getLogger(__name__)

ENCODER = "vae_encoder"
S3FD_WEIGHTS = "s3fd.constants.safetensors"  # shared by every frame size's package
# Frame sizes (height, width) built by default: 720p and 1080p both ways, and the sample
# avatar (examples/media/yongen.mp4). Another size prepares with eager S3FD.
DEFAULT_SIZES: tuple[tuple[int, int], ...] = (
    (720, 1280),
    (1280, 720),
    (1080, 1920),
    (1920, 1080),
    (1216, 704),
)


def s3fd_package(height: int, width: int) -> str:
    return f"s3fd_h{height}_w{width}.pt2"


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'720x1280,1080x1920' (HEIGHTxWIDTH each) -> ((720, 1280), (1080, 1920)); '' -> ()."""
    sizes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        height, sep, width = item.partition("x")
        if not sep or not height.isdigit() or not width.isdigit():
            raise ValueError(f"frame size {item!r}: HEIGHTxWIDTH in pixels, e.g. 720x1280")
        sizes.append((int(height), int(width)))
    return tuple(sizes)


@dataclass(frozen=True)
class PrepareSpec:
    """What to build: the face models' dtype, the encoder's batch (a chunk's frames), S3FD's
    batch (`FaceLocator.locate`'s) and its frame sizes."""

    face_dtype: torch.dtype
    batch: int
    s3fd_batch: int
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES


class EncoderMoments(torch.nn.Module):
    """`LatentCodec._encoder_moments` as a module to export."""

    def __init__(self, codec: LatentCodec) -> None:
        super().__init__()
        self.encoder = codec.vae.encoder
        self.quant_conv = codec.vae.quant_conv

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        moments: torch.Tensor = self.encoder(images)
        return self.quant_conv(moments) if self.quant_conv is not None else moments


class S3FDPick(torch.nn.Module):
    """`S3FD._strongest` as a module: uint8 BGR [B, H, W, 3] -> [B, 5] (score, x1, y1, x2, y2)."""

    def __init__(self, detector: S3FD) -> None:
        super().__init__()
        self.net = detector.net
        self.dtype = detector.dtype

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        from runtime.engine.faces.s3fd import normalized_input, strongest_cells

        scores, boxes = strongest_cells(self.net(normalized_input(frames, self.dtype)))
        return torch.cat([scores[:, None], boxes], dim=1)


def build(
    staging: Path,
    layout: ModelsLayout,
    device: torch.device,
    dtype: torch.dtype,
    spec: PrepareSpec,
    package: Callable[[torch.nn.Module, tuple[torch.Tensor, ...], Path], None],
    *,
    cache: Any = None,
) -> dict[str, Any]:
    """Export and package the encoder and S3FD per size into `staging` with `package`
    (`aot_build.package_model` with the build's options); the manifest's `prepare` section."""
    from runtime.engine.faces.s3fd import S3FD
    from runtime.engine.latents import LatentCodec

    codec = LatentCodec(layout.vae_dir, device, dtype, cache=cache)
    images = torch.zeros(2 * spec.batch, 3, 256, 256, device=device, dtype=dtype)
    package(EncoderMoments(codec), (images,), staging / f"{ENCODER}.pt2")
    del codec
    sizes = []
    have_s3fd = layout.s3fd.is_file()  # the speak benchmark's models have no face models
    pick = S3FDPick(S3FD.load(layout.s3fd, device, spec.face_dtype)) if have_s3fd else None
    for height, width in spec.sizes:
        if pick is None:
            break
        frames = torch.zeros(spec.s3fd_batch, height, width, 3, device=device, dtype=torch.uint8)
        path = staging / s3fd_package(height, width)
        package(pick, (frames,), path)
        weights = path.with_name(path.stem + ".constants.safetensors")
        weights.replace(staging / S3FD_WEIGHTS)  # the same tensors for every size
        sizes.append([height, width])
    return {
        "batch": spec.batch,
        "s3fd_batch": spec.s3fd_batch,
        "face_dtype": str(spec.face_dtype).removeprefix("torch."),
        "s3fd_sizes": sizes,
        "s3fd_source": _stamp(layout) if have_s3fd else None,
        "files": [
            f"{ENCODER}.pt2",
            f"{ENCODER}.constants.safetensors",
            *(s3fd_package(h, w) for h, w in sizes),
            *([S3FD_WEIGHTS] if sizes else []),
        ],
    }


def _stamp(layout: ModelsLayout) -> str:
    """The S3FD checkpoint its packages hold: its SHA-256 where the worker's weight sync
    verified it (the same on every instance), else its size and mtime."""
    from runtime.engine import aot

    path = layout.s3fd
    verified = aot.verified_digests(layout.root).get(path)
    if verified:
        return verified
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def section(directory: Path) -> dict[str, Any] | None:
    """The manifest's `prepare` section, or None where the packages have none."""
    manifest = json.loads((directory / "manifest.json").read_text())
    prepare: dict[str, Any] | None = manifest.get("prepare")
    return prepare


def attach(
    directory: Path,
    codec: LatentCodec,
    detector: S3FD | None,
    layout: ModelsLayout,
    device: torch.device,
) -> dict[str, float]:
    """Load the preparation packages in `directory` into `codec` (the encoder) and `detector`
    (one runner per frame size) where they match them; ms per package loaded. A package that
    does not load is skipped (that model stays eager), as is S3FD when its checkpoint or
    dtype differs from the one the packages were built from."""
    from runtime.engine import aot, aot_load

    prepare = section(directory)
    timings: dict[str, float] = {}
    if prepare is None:
        return timings
    batch = int(prepare["batch"])

    def load(name: str, weights: Path) -> Callable[..., torch.Tensor] | None:
        start = time.perf_counter()
        try:
            run = aot_load.load_runner(
                directory / name,
                device,
                single_threaded=False,
                constants=lambda: load_file(str(weights), device=str(device)),
            )
        except aot.AotUnavailableError as error:
            log.warning("preparation package %s not loaded (%s): eager instead", name, error)
            return None
        timings[name.removesuffix(".pt2")] = (time.perf_counter() - start) * 1000
        return run

    encoder = load(f"{ENCODER}.pt2", directory / f"{ENCODER}.constants.safetensors")
    if encoder is not None:
        codec.use_packaged_encoder(_contiguous(encoder), batch)
    if detector is None or not prepare["s3fd_sizes"]:
        return timings
    if not _detector_matches(prepare, detector, layout):
        return timings
    for height, width in prepare["s3fd_sizes"]:
        run = load(s3fd_package(height, width), directory / S3FD_WEIGHTS)
        if run is not None:
            shape = (int(prepare["s3fd_batch"]), height, width, 3)
            detector.use_packaged(shape, _split_pick(_contiguous(run)))
    return timings


def _detector_matches(prepare: Mapping[str, Any], detector: S3FD, layout: ModelsLayout) -> bool:
    built = prepare.get("face_dtype"), prepare.get("s3fd_source")
    here = str(detector.dtype).removeprefix("torch."), _stamp(layout)
    if built != here:
        log.info("S3FD packages built for %s, the detector is %s: eager S3FD", built, here)
    return built == here


def _contiguous(run: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A package reads its input with the example's strides (contiguous): the encoder's crops
    come channels-last from their NHWC upload (measured: latents off by 0.27 on CPU)."""

    def contiguous(images: torch.Tensor) -> torch.Tensor:
        return run(images.contiguous())

    return contiguous


def _split_pick(
    run: Callable[..., torch.Tensor],
) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    def pick(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        picked = run(frames)
        return picked[:, 0], picked[:, 1:]

    return pick
