"""Avatar preparation with the engine's models: decode the media, then per chunk of frames
locate the faces, crop, VAE-encode and mask (`preparing.prepare_frames` runs the chunks); and
the compiled or AOT-packaged S3FD and VAE encoder that preparation may run instead of eager."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from runtime.engine import aot, aot_prepare
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.avatar_reader import AvatarReader
from runtime.engine.batch_sizes import CPU_BATCH_SIZE, free_memory, is_oom
from runtime.engine.compile_cache import artifacts_path, load_artifacts, save_artifacts
from runtime.engine.cudnn import cudnn_benchmark
from runtime.engine.engine_contract import Failure, MediaError, halve_on_oom
from runtime.engine.face_sync_protocols import BoxLike
from runtime.engine.frame_compose import crop_face, mask_over_box
from runtime.engine.layout import ModelsLayout
from runtime.engine.options import AvatarOptions
from runtime.engine.preparing import Frames, Stages, prepare_frames
from runtime.engine.untrusted import DETECTOR_MIN_SIDE, DecodeLimits
from runtime.fileio import file_sha256

if TYPE_CHECKING:
    from runtime.engine.engine import MuseTalkEngine

log = logging.getLogger(__name__)

# A prepared avatar holds every frame in memory (and in the cache object): 60 s at 25 fps of
# 1080p is about 9 GB. Longer avatars are refused rather than exhausting the host.
MAX_AVATAR_FRAMES = 1500
# Preparation on CUDA: frames per chunk through the overlapped stages (preparing.py), and the
# BiSeNet batch (the official 8 elsewhere): larger chunks gained nothing on an H100.
PREPARE_CHUNK_FRAMES = 32
PARSE_BATCH_SIZE = 8


class AvatarPreparer:
    """`MuseTalkEngine.prepare` and what speeds it up, with the engine's models as they are
    when called. Keeps the compiled code to save after the first preparation and the AOT
    packages to attach on the first one."""

    def __init__(self, engine: MuseTalkEngine) -> None:
        self._engine = engine
        # Where `compile` saves its compiled code after the first preparation.
        self._artifacts: Path | None = None
        # AOT packages, attached on the first `prepare` (`use_packages`).
        self._packages: tuple[Path, ModelsLayout] | None = None

    def prepare(
        self,
        avatar_media: Path,
        options: AvatarOptions,
        *,
        overlap: bool | None,
        chunk_frames: int | None,
        device_ops: bool | None,
        decode_ahead: bool | None,
        limits: DecodeLimits | None,
        should_stop: Callable[[], bool] | None,
    ) -> PreparedAvatar:
        """See `MuseTalkEngine.prepare`."""
        engine = self._engine
        self._attach_packages()
        on_gpu = engine.device.type == "cuda"
        overlap = False if overlap is None else overlap
        device_ops = on_gpu if device_ops is None else device_ops
        decode_ahead = on_gpu if decode_ahead is None else decode_ahead
        chunk_frames = chunk_frames or (
            PREPARE_CHUNK_FRAMES if on_gpu else engine.max_avatar_frames
        )
        limits = limits or DecodeLimits()
        reader = AvatarReader(
            avatar_media,
            still_fps=options.fps,
            max_frames=engine.max_avatar_frames,
            limits=replace(limits, min_side=max(limits.min_side, DETECTOR_MIN_SIDE)),
            should_stop=should_stop,
        )
        with (
            ThreadPoolExecutor(1, thread_name_prefix="prepare-sha256") as hasher,
            cudnn_benchmark(on_gpu),
        ):
            source_sha256 = hasher.submit(file_sha256, avatar_media)
            start = time.perf_counter()
            prepared = prepare_frames(
                reader.frames(),
                self._stages(options, chunk_frames, device_ops=device_ops),
                chunk_frames=chunk_frames,
                overlap=overlap,
                device=engine.device,
                decode_ahead=decode_ahead,
                should_stop=should_stop,
            )
            elapsed_ms = (time.perf_counter() - start) * 1000
        if self._artifacts is not None:  # after the first compiled preparation
            save_artifacts(self._artifacts)
            self._artifacts = None
        if not prepared.has_face.any():
            raise MediaError(Failure.NO_FACE, "no face found in any avatar frame")
        timings = prepared.timings_ms | {"total": elapsed_ms}
        log.info(
            "prepared avatar: %d frames, %d with a face, timings %s",
            len(prepared.frames),
            int(prepared.has_face.sum()),
            {k: round(v, 1) for k, v in timings.items()},
        )
        avatar = PreparedAvatar(
            frames=prepared.frames,
            boxes=prepared.boxes,
            has_face=prepared.has_face,
            latents=prepared.latents,
            masks=tuple(prepared.masks),
            fps=reader.fps,
            options=options,
            source_sha256=source_sha256.result(),
            model_version=engine.model_version,
        )
        avatar.timings_ms.update(timings)
        return avatar

    def compile(self, mode: str | None, *, cache_dir: Path | None, backend: str) -> bool:
        """See `MuseTalkEngine.compile_preparation`."""
        from runtime.engine.faces.s3fd import S3FD

        engine = self._engine
        if backend == "inductor" and (lacking := aot.missing_toolchain(engine.device)):
            log.warning("cannot compile preparation here (%s): its models run eager", lacking)
            return False
        detector = getattr(engine.locator, "detector", None)
        detector = detector if isinstance(detector, S3FD) else None
        if cache_dir is not None:
            # keyed by the face models' dtype too: S3FD's compiled code differs with it
            faces = str(detector.dtype).removeprefix("torch.") if detector else "none"
            graphs = f"prepare{PREPARE_CHUNK_FRAMES}-s3fd-{faces}"
            path = artifacts_path(cache_dir, engine.device, engine.dtype, mode, graphs=graphs)
            self._artifacts = None if load_artifacts(path) else path
        if detector is not None:
            detector.compile(mode, backend)
        engine.codec.tune_encoder(
            channels_last=True,
            batch=PREPARE_CHUNK_FRAMES if engine.device.type == "cuda" else CPU_BATCH_SIZE,
            compile_mode=mode,
            compile_backend=backend,
        )
        return True

    def use_packages(self, directory: Path, layout: ModelsLayout) -> None:
        """See `MuseTalkEngine.use_prepare_packages`."""
        self._packages = (directory, layout)

    def _attach_packages(self) -> None:
        if self._packages is None:
            return
        from runtime.engine.faces.s3fd import S3FD

        engine = self._engine
        (directory, layout), self._packages = self._packages, None
        detector = getattr(engine.locator, "detector", None)
        engine.prepare_packages_ms = aot_prepare.attach(
            directory,
            engine.codec,  # type: ignore[arg-type]  # an AotCodec passes its eager codec's
            detector if isinstance(detector, S3FD) else None,
            layout,
            engine.device,
        )
        log.info("preparation packages attached: %s", engine.prepare_packages_ms)

    def _stages(
        self, options: AvatarOptions, chunk_frames: int, *, device_ops: bool = False
    ) -> Stages:
        """The engine's models bound to one avatar's options, per chunk of frames."""
        engine = self._engine

        def locate(frames: Frames) -> Sequence[BoxLike | None]:
            return engine.locator.locate(
                frames, bbox_shift=options.bbox_shift, extra_margin=options.extra_margin
            )

        def masks(frames: Frames, boxes: Sequence[BoxLike], rows: np.ndarray) -> list[np.ndarray]:
            blends = engine.parser.blend_masks(
                frames,
                boxes,
                mode=options.blend_mode,
                blur=options.mask_blur,
                batch_size=chunk_frames if engine.device.type == "cuda" else PARSE_BATCH_SIZE,
            )
            return [
                mask_over_box(blend.mask, blend.crop_box, row)
                for blend, row in zip(blends, rows, strict=True)
            ]

        return Stages(
            locate=locate,
            crop=crop_face,
            encode=self._encode_crops,
            masks=masks,
            upload=self._upload_frames if device_ops else None,
        )

    def _upload_frames(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """A chunk's frames to the device in one copy, from pinned memory on CUDA (stacked
        straight into it), without waiting for the copy: the stream orders what reads it."""
        device = self._engine.device
        pinned = device.type == "cuda"
        staged = torch.empty((len(frames), *frames[0].shape), dtype=torch.uint8, pin_memory=pinned)
        np.stack(frames, out=staged.numpy())
        return staged.to(device, non_blocking=pinned)

    def _encode_crops(self, crops: np.ndarray) -> np.ndarray:
        """Latents of 256x256 crops in batches, halving the batch on GPU out-of-memory."""
        engine = self._engine
        # Two 256x256 images per frame (masked and reference), so half the render batch.
        size = max(1, engine.pick_batch_size() // 2)
        parts: list[np.ndarray] = []
        done = 0
        while done < len(crops):

            def encode(n: int, start: int = done) -> np.ndarray:
                part = crops[start : start + n]
                count = len(part)
                if torch.backends.cudnn.benchmark:  # fixed shapes, as padded_batch
                    part = np.pad(part, [(0, n - count)] + [(0, 0)] * (part.ndim - 1))
                encoded = engine.codec.encode_crops(part)[:count]
                return encoded.float().cpu().numpy()

            encoded, size = halve_on_oom(
                encode,
                batch_size=size,
                min_batch_size=1,
                is_oom=is_oom,
                free_memory=lambda: free_memory(engine.device),
            )
            parts.append(encoded)
            done += len(encoded)
        return np.concatenate(parts)
