"""`MuseTalkEngine`: load once, prepare avatars once, speak many times (spec §2-§8).

`prepare` does everything that depends only on the avatar: decode, locate faces, crop 256x256
(LANCZOS4), VAE-encode the masked and reference latents, and precompute each frame's blend mask.
`speak` does the per-job work: audio tokens, silence detection, UNet + VAE decode in batches
(halving on GPU out-of-memory), blending on the device, and streaming frames to the encoder.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import torch

from runtime.engine import aot, aot_adapters, aot_build, aot_load, aot_prepare
from runtime.engine.audio import (
    D_MODEL,
    TOKENS_PER_FRAME,
    AudioEncoder,
    frame_count,
    load_audio_16k,
    positional_encoding,
)
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.avatar_reader import AvatarReader
from runtime.engine.blend import PasteBox
from runtime.engine.compile_cache import artifacts_path, load_artifacts, save_artifacts
from runtime.engine.cudnn import cudnn_benchmark
from runtime.engine.interface import (
    SEGMENT_FRAMES,
    Failure,
    Interrupted,
    MediaError,
    PreparedAvatarFormatError,
    PreparedAvatarLike,
    ProgressFn,
    Rendered,
    SegmentPlan,
    WeightsKind,
    halve_on_oom,
)
from runtime.engine.latents import CROP_SIZE, LATENT_SIZE, Generator, LatentCodec
from runtime.engine.layout import ModelsLayout
from runtime.engine.media import VideoWriter, pick_video_codec
from runtime.engine.options import MODEL_VERSION, AvatarOptions, RenderOptions
from runtime.engine.ports import (
    BoxLike,
    FaceLocatorLike,
    FaceParserLike,
    SyncScorerLike,
)
from runtime.engine.preparing import Frames, Stages, prepare_frames
from runtime.engine.resident import ResidentCache
from runtime.engine.segments import SegmentedVideoWriter
from runtime.engine.untrusted import DETECTOR_MIN_SIDE, DecodeLimits
from runtime.engine.vad import SpeechDetector, generation_weights
from runtime.engine.weight_cache import WeightCache, default_cache_dir
from runtime.engine.yuv import I420Frame, paste_region
from runtime.fileio import file_sha256

log = logging.getLogger(__name__)

CPU_BATCH_SIZE = 8  # the official offline batch size
MAX_GPU_BATCH_SIZE = 64
# Peak bytes per batch item of UNet + VAE decode at 256x256 (the decoder dominates). Estimated
# from the full-size models' peak memory on CPU in fp32 (about 240 MB per item at batch 4),
# halved for fp16, plus ~30% for the allocator and cuDNN workspaces; `bench/speak.py` measures
# 134 MB per frame up to batch 32 and 160 MB from 64 in fp16. OOM halving covers an estimate
# that proves too small.
GPU_BYTES_PER_ITEM = {torch.float16: 160 * 1024**2, torch.float32: 320 * 1024**2}
GPU_RESERVED_BYTES = 1024**3
# What the packaged models hold on the card before any batch (fp16 UNet ~1.7 GB, decoder,
# Whisper, and the face models): taken off the card's total for the AOT batch size.
AOT_MODELS_BYTES = 3 * 1024**3
# A prepared avatar holds every frame in memory (and in the cache object): 60 s at 25 fps of
# 1080p is about 9 GB. Longer avatars are refused rather than exhausting the host.
MAX_AVATAR_FRAMES = 1500
# Preparation on CUDA: frames per chunk through the overlapped stages (preparing.py), and the
# BiSeNet batch (the official 8 elsewhere): larger chunks gained nothing on an H100.
PREPARE_CHUNK_FRAMES = 32
PARSE_BATCH_SIZE = 8
MAX_SYNC_FRAMES = 750  # score at most the first 30 s at 25 fps: crops are 192 KiB each
# torch.compile mode of `compile_models`: CUDA graphs on top of Inductor, which at batch 64
# take the UNet step about a third faster than Inductor's default mode (launch overhead).
DEFAULT_COMPILE_MODE = "reduce-overhead"
COMPILE_MODES = frozenset(
    {"default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"}
)
CUDA_GRAPH_MODES = frozenset({"reduce-overhead", "max-autotune"})
# Batches queued on the GPU before `speak` waits for the oldest (1: launch, wait, hand over).
PIPELINE_DEPTH = 2
# With `segment_encoders` > 1, `speak` without a SegmentPlan splits a clip longer than this into
# segments encoded side by side; a shorter one goes to one mp4 writer (a split adds a remux and
# would leave the extra encoders little to do).
SPLIT_MIN_FRAMES = 2 * SEGMENT_FRAMES
SPLIT_SEGMENT_FRAMES = SEGMENT_FRAMES
# The split's last segment in halving pieces (`SegmentPlan.taper`): the encoders' backlog when the
# GPU is done, the render's tail, is then a 15-frame piece's rather than a 125-frame segment's.
SPLIT_TAPER = True
# A compiled engine also keeps graphs at this batch size, for a job's last frames: padded to the
# full batch, the last batch cost up to a whole batch of GPU time for a few frames (a 30 s clip at
# 64: 18 padded frames, ~35 ms on an H100) and the tail after the GPU finished grew with it.
TAIL_BATCH_SIZE = 16
SYNC_WINDOW_FRAMES = 16  # SyncNet sees 16 consecutive frames (spec §9); shorter clips get no score
_NO_FACE = np.zeros((0, 0, 3), dtype=np.uint8)  # a generated frame the sync scorer will not see


class MuseTalkEngine:
    """The `LipSyncEngine` for MuseTalk v1.5. Build with `load`, or inject parts for tests."""

    model_version = MODEL_VERSION
    # Batches in flight on the device in `speak` (see PIPELINE_DEPTH); 1 waits for each batch.
    pipeline_depth = PIPELINE_DEPTH

    def __init__(
        self,
        *,
        generator: Generator | aot_adapters.AotGenerator,
        codec: LatentCodec | aot_adapters.AotCodec,
        audio_encoder: AudioEncoder | aot_adapters.AotAudioEncoder,
        locator: FaceLocatorLike,
        parser: FaceParserLike,
        scorer: SyncScorerLike | None,
        weights: WeightsKind,
        device: torch.device,
        dtype: torch.dtype,
        encoder_preset: str = "veryfast",
        max_avatar_frames: int = MAX_AVATAR_FRAMES,
        compile_models: bool = False,
        compile_mode: str | None = DEFAULT_COMPILE_MODE,
        cache_dir: Path | None = None,
        segment_encoders: int = 1,
    ) -> None:
        self.generator = generator
        self.codec = codec
        self.audio_encoder = audio_encoder
        self.locator = locator
        self.parser = parser
        self.scorer = scorer
        self.weights: WeightsKind = weights
        self.device = device
        self.dtype = dtype
        self.encoder_preset = encoder_preset
        self.max_avatar_frames = max_avatar_frames
        # Encoders side by side when `speak`, given no plan, splits a long clip itself (a
        # worker's SegmentPlan carries its own count). Off by default: on a 16-core host the
        # split ran no faster than one writer.
        self.segment_encoders = max(1, segment_encoders)
        self._speech: SpeechDetector | None = None
        self._positional = positional_encoding().to(device=device, dtype=dtype)
        self._resident = ResidentCache(device, dtype)
        # AOTInductor packages (see `aot`): compiled already, at a static batch size.
        self.aot = isinstance(generator, aot_adapters.AotGenerator)
        self.compiled = compile_models or self.aot
        self.compile_mode = None if self.aot else compile_mode
        self.load_timings_ms: dict[str, float] = {}
        jit = compile_models and not self.aot
        self._artifacts = (
            artifacts_path(cache_dir, device, dtype, compile_mode, graphs=f"tail{TAIL_BATCH_SIZE}")
            if jit and cache_dir
            else None
        )
        self._artifacts_saved = False
        # Where `compile_preparation` saves its compiled code after the first preparation.
        self._prepare_artifacts: Path | None = None
        # Preparation's AOT packages, attached on the first `prepare` (`use_prepare_packages`).
        self._prepare_packages: tuple[Path, ModelsLayout] | None = None
        self.prepare_packages_ms: dict[str, float] = {}
        # Whether this process started from cached compile artifacts (reported by the bench).
        self.compile_artifacts_loaded = False
        if jit:
            if self._artifacts is not None:
                self.compile_artifacts_loaded = load_artifacts(self._artifacts)
            compile_for_speed(
                cast(Generator, generator), cast(LatentCodec, codec), mode=compile_mode
            )

    @classmethod
    def load(
        cls,
        models_dir: Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        *,
        locator: FaceLocatorLike | None = None,
        parser: FaceParserLike | None = None,
        scorer: SyncScorerLike | None = None,
        encoder_preset: str = "veryfast",
        compile_models: bool = False,
        compile_mode: str | None = DEFAULT_COMPILE_MODE,
        cache_dir: Path | None = None,
        segment_encoders: int = 1,
        aot_packages: bool = False,
    ) -> MuseTalkEngine:
        """Load every model from the official layout; fp16 on CUDA, fp32 on CPU by default.

        Weights come from a converted copy in `cache_dir` (default `<models_dir>.cache`,
        beside the models directory; written on the first load, see `weight_cache`).
        `compile_models` wraps the UNet and the VAE decoder in `torch.compile` (static shapes;
        speak pads the last batch so one graph serves a job) and compiles them at the batch
        size `pick_batch_size` gives before returning; the compiled code is kept in
        `cache_dir` for the next process. `compile_mode` is torch's (default: reduce-overhead,
        i.e. CUDA graphs; None for torch's default mode). `segment_encoders` > 1: `speak`
        splits a long clip across that many encoders (default 1: one writer).

        With `compile_models` and `aot_packages` the UNet, decoder and Whisper encoder come
        from AOTInductor packages in `cache_dir` (see `aot`): built on the first such load
        (minutes), then loaded without importing diffusers or transformers (preparation
        imports them on first use). Where packages cannot be built or loaded, the models are
        compiled with `torch.compile` as above. Off by default: building needs a C++ compiler
        and CUDA headers (the worker image has neither) and minutes per card (docs/engine.md).
        """
        device, dtype = _device_and_dtype(device, dtype)
        layout = ModelsLayout(models_dir)
        weights = layout.weights_kind()
        if weights == "random":
            log.warning(
                "models in %s are RANDOM weights (make-weights): output is not a real lip sync",
                models_dir,
            )
        cache_dir = cache_dir or default_cache_dir(models_dir)
        cache = WeightCache(cache_dir)
        timings: dict[str, float] = {}
        packaged = (
            _aot_models(layout, cache, device, dtype, timings)
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
            with _timed(timings, "imports"):
                preload_libraries()
            with _timed(timings, "unet", device):
                generator = Generator(
                    layout.unet_config, layout.unet_weights, device, dtype, cache=cache
                )
            with _timed(timings, "vae", device):
                codec = LatentCodec(layout.vae_dir, device, dtype, cache=cache)
            with _timed(timings, "whisper", device):
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
        engine = cls(
            generator=generator,
            codec=codec,
            audio_encoder=audio_encoder,
            locator=locator,
            parser=parser,
            scorer=scorer,
            weights=weights,
            device=device,
            dtype=dtype,
            encoder_preset=encoder_preset,
            compile_models=compile_models,
            compile_mode=compile_mode,
            cache_dir=cache_dir,
            segment_encoders=segment_encoders,
        )
        if packaged is not None and aot_prepare.section(packaged.directory) is not None:
            engine.use_prepare_packages(packaged.directory, layout)
        if compile_models and not engine.aot:  # packages ran (and captured graphs) on load
            with _timed(timings, "compile", device):
                engine.warm_up(engine.pick_batch_size())
        engine.load_timings_ms = timings
        log.info(
            "engine loaded: timings %s, weight cache hits %s",
            {k: round(v) for k, v in timings.items()},
            cache.hits,
        )
        return engine

    @torch.inference_mode()
    def warm_up(self, batch_size: int) -> None:
        """One batch through the UNet and the decoder, so a compiled engine has its graphs for
        this size (and the tail size `speak` ends a job with) before the first job; the first
        compile of a cache directory saves its artifacts there for the next process."""
        tail = self._tail_batch_size(batch_size)
        for size in [batch_size] if tail is None else [batch_size, tail]:
            latents = torch.zeros(size, 8, LATENT_SIZE, LATENT_SIZE, device=self.device)
            audio = torch.zeros(size, TOKENS_PER_FRAME, D_MODEL, device=self.device)
            # CUDA graphs record on the second call of a shape: run it twice for them.
            for _ in range(2 if self._uses_cuda_graphs else 1):
                self._mark_graph_step()
                self.codec.decode(self.generator.step(latents, audio))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if self._artifacts is not None and not (
            self.compile_artifacts_loaded or self._artifacts_saved
        ):
            self._artifacts_saved = save_artifacts(self._artifacts)

    @property
    def _uses_cuda_graphs(self) -> bool:
        """torch.compile's CUDA graphs (AOT packages replay their own: `aot_load.StaticRunner`)."""
        return (
            self.compiled
            and not self.aot
            and self.device.type == "cuda"
            and any(mode in CUDA_GRAPH_MODES for mode in split_compile_mode(self.compile_mode))
        )

    def _mark_graph_step(self) -> None:
        """A new batch begins: outputs of the last CUDA-graph replay may be overwritten."""
        if self._uses_cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    # ------------------------------------------------------------------ prepare

    def prepare(
        self,
        avatar_media: Path,
        options: AvatarOptions,
        *,
        overlap: bool | None = None,
        chunk_frames: int | None = None,
        device_ops: bool | None = None,
        decode_ahead: bool | None = None,
        limits: DecodeLimits | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> PreparedAvatar:
        """Decode, locate, crop, encode and mask every frame (`preparing.prepare_frames`).

        On CUDA by default the avatar goes through in chunks of PREPARE_CHUNK_FRAMES, stage
        after stage on one stream with the decoding a chunk ahead on its own thread
        (`decode_ahead`; stages overlapped on three streams, `overlap`, slow each other down to
        about half the speed), cuDNN's autotuner on for the chunks' fixed shapes, and each
        chunk goes to the device once, where the face models' pre- and post-processing runs
        batched (`device_ops`); on CPU one chunk, stage after stage, with the host (OpenCV/PIL) pre-
        and post-processing of upstream. `overlap` / `chunk_frames` / `device_ops` /
        `decode_ahead` override that (tests, benchmark); see also `compile_preparation`.
        Every frame is decoded within `limits` (`avatar_reader.AvatarReader`); `should_stop` ends
        preparation with `Interrupted` within a frame of decoding or a chunk of the stages.
        """
        self._attach_prepare_packages()
        on_gpu = self.device.type == "cuda"
        overlap = False if overlap is None else overlap
        device_ops = on_gpu if device_ops is None else device_ops
        decode_ahead = on_gpu if decode_ahead is None else decode_ahead
        chunk_frames = chunk_frames or (PREPARE_CHUNK_FRAMES if on_gpu else self.max_avatar_frames)
        limits = limits or DecodeLimits()
        reader = AvatarReader(
            avatar_media,
            still_fps=options.fps,
            max_frames=self.max_avatar_frames,
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
                self._prepare_stages(options, chunk_frames, device_ops=device_ops),
                chunk_frames=chunk_frames,
                overlap=overlap,
                device=self.device,
                decode_ahead=decode_ahead,
                should_stop=should_stop,
            )
            elapsed_ms = (time.perf_counter() - start) * 1000
        if self._prepare_artifacts is not None:  # after the first compiled preparation
            save_artifacts(self._prepare_artifacts)
            self._prepare_artifacts = None
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
            model_version=self.model_version,
        )
        avatar.timings_ms.update(timings)
        return avatar

    def compile_preparation(
        self,
        mode: str | None = None,
        *,
        cache_dir: Path | None = None,
        backend: str = "inductor",
    ) -> bool:
        """S3FD and the VAE encoder through `torch.compile` for `prepare` on CUDA; False (and
        the models stay eager) where this host cannot compile (no C++ compiler or CUDA headers,
        as in the worker image).

        Static shapes: S3FD's batches and the encoder's (a chunk's frames, channels-last on
        CUDA) are padded to full ones, so one graph each serves every avatar of a frame size.
        Compiled, S3FD takes about 30% less time and the encoder less than half, with the same
        boxes (docs/benchmark.md). The first preparation compiles (about 30 s on an H100); with
        `cache_dir` the compiled code is saved there after it and loaded before the next
        process compiles (`compile_cache`). The faces' models other than S3FD are not compiled.
        """
        from runtime.engine.faces.s3fd import S3FD

        if backend == "inductor" and (lacking := aot.missing_toolchain(self.device)):
            log.warning("cannot compile preparation here (%s): its models run eager", lacking)
            return False
        detector = getattr(self.locator, "detector", None)
        detector = detector if isinstance(detector, S3FD) else None
        if cache_dir is not None:
            # keyed by the face models' dtype too: S3FD's compiled code differs with it
            faces = str(detector.dtype).removeprefix("torch.") if detector else "none"
            graphs = f"prepare{PREPARE_CHUNK_FRAMES}-s3fd-{faces}"
            path = artifacts_path(cache_dir, self.device, self.dtype, mode, graphs=graphs)
            self._prepare_artifacts = None if load_artifacts(path) else path
        if detector is not None:
            detector.compile(mode, backend)
        self.codec.tune_encoder(
            channels_last=True,
            batch=PREPARE_CHUNK_FRAMES if self.device.type == "cuda" else CPU_BATCH_SIZE,
            compile_mode=mode,
            compile_backend=backend,
        )
        return True

    def use_prepare_packages(self, directory: Path, layout: ModelsLayout) -> None:
        """Run S3FD and the VAE encoder in `prepare` from the AOT packages in `directory`
        (`aot_prepare`: what `compile_preparation` compiles, with no compiler needed here).
        Attached on the first `prepare`, which loads the eager VAE for its encoder anyway, so
        the engine's cold start does not pay for it."""
        self._prepare_packages = (directory, layout)

    def _attach_prepare_packages(self) -> None:
        if self._prepare_packages is None:
            return
        from runtime.engine.faces.s3fd import S3FD

        (directory, layout), self._prepare_packages = self._prepare_packages, None
        detector = getattr(self.locator, "detector", None)
        self.prepare_packages_ms = aot_prepare.attach(
            directory,
            self.codec,  # type: ignore[arg-type]  # an AotCodec passes its eager codec's
            detector if isinstance(detector, S3FD) else None,
            layout,
            self.device,
        )
        log.info("preparation packages attached: %s", self.prepare_packages_ms)

    def _prepare_stages(
        self, options: AvatarOptions, chunk_frames: int, *, device_ops: bool = False
    ) -> Stages:
        """The engine's models bound to one avatar's options, per chunk of frames."""

        def locate(frames: Frames) -> Sequence[BoxLike | None]:
            return self.locator.locate(
                frames, bbox_shift=options.bbox_shift, extra_margin=options.extra_margin
            )

        def masks(frames: Frames, boxes: Sequence[BoxLike], rows: np.ndarray) -> list[np.ndarray]:
            blends = self.parser.blend_masks(
                frames,
                boxes,
                mode=options.blend_mode,
                blur=options.mask_blur,
                batch_size=chunk_frames if self.device.type == "cuda" else PARSE_BATCH_SIZE,
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
        pinned = self.device.type == "cuda"
        staged = torch.empty((len(frames), *frames[0].shape), dtype=torch.uint8, pin_memory=pinned)
        np.stack(frames, out=staged.numpy())
        return staged.to(self.device, non_blocking=pinned)

    def _encode_crops(self, crops: np.ndarray) -> np.ndarray:
        """Latents of 256x256 crops in batches, halving the batch on GPU out-of-memory."""
        # Two 256x256 images per frame (masked and reference), so half the render batch.
        size = max(1, self.pick_batch_size() // 2)
        parts: list[np.ndarray] = []
        done = 0
        while done < len(crops):

            def encode(n: int, start: int = done) -> np.ndarray:
                part = crops[start : start + n]
                count = len(part)
                if torch.backends.cudnn.benchmark:  # fixed shapes, as padded_batch
                    part = np.pad(part, [(0, n - count)] + [(0, 0)] * (part.ndim - 1))
                encoded = self.codec.encode_crops(part)[:count]
                return encoded.float().cpu().numpy()

            encoded, size = halve_on_oom(
                encode,
                batch_size=size,
                min_batch_size=1,
                is_oom=_is_oom,
                free_memory=self._free_memory,
            )
            parts.append(encoded)
            done += len(encoded)
        return np.concatenate(parts)

    def load_prepared(self, data: bytes) -> PreparedAvatar:
        """A cached avatar; `PreparedAvatarFormatError` (re-prepare) if another format or model
        made it."""
        prepared = PreparedAvatar.from_bytes(data)
        if prepared.model_version != self.model_version:
            raise PreparedAvatarFormatError(
                f"prepared by {prepared.model_version}, this engine is {self.model_version}"
            )
        return prepared

    # ------------------------------------------------------------------ speak

    def pick_batch_size(self) -> int:
        """Largest batch the free GPU memory holds (CPU: the official default of 8)."""
        if isinstance(self.generator, aot_adapters.AotGenerator):
            return self.generator.batch_size  # the packages' static batch
        if self.device.type != "cuda":
            return CPU_BATCH_SIZE
        free, _total = torch.cuda.mem_get_info(self.device)
        return batch_size_for_memory(free, self.dtype)

    def speak(
        self,
        prepared: PreparedAvatarLike,
        audio: Path,
        out_path: Path,
        *,
        options: RenderOptions,
        batch_size: int | None = None,
        min_batch_size: int = 1,
        progress: ProgressFn | None = None,
        on_oom_halving: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        segments: SegmentPlan | None = None,
    ) -> Rendered:
        """Render `audio` on the avatar into `out_path`.

        With `segments`, the output is written as segments first (see `runtime.engine.segments`)
        and generation batches are cut at segment boundaries, so a segment's frames never
        depend on where a render started; rendering begins at `segments.start_frame`. Without
        it, a clip longer than `SPLIT_MIN_FRAMES` is still written as segments in a scratch
        directory beside `out_path` when `segment_encoders` > 1, so that many encoders share
        the work (for hosts where one encoder is slower than the GPU path).
        """
        if not isinstance(prepared, PreparedAvatar):
            raise TypeError("speak needs a PreparedAvatar from this engine")
        if segments is not None and segments.taper:
            raise ValueError("a tapered plan is speak's own split; a resumable plan cannot taper")
        avatar = prepared
        timings: dict[str, float] = {}
        stop = should_stop or (lambda: False)
        with _timed(timings, "audio"):
            audio_16k = load_audio_16k(audio)
            total = frame_count(len(audio_16k), avatar.fps)
            if total == 0:
                raise MediaError(Failure.NO_SPEECH, "the audio is shorter than one video frame")
            tokens = self.audio_encoder.frame_tokens(audio_16k, avatar.fps)
        with _timed(timings, "vad"):
            weights = self._generation_weights(audio_16k, total, avatar.fps, options)
        faced = np.array([avatar.has_face[avatar.cycle_index(i)] for i in range(total)])
        first_frame = 0 if segments is None else min(segments.start_frame, total)
        to_generate = np.flatnonzero((weights > 0) & faced)
        to_generate = to_generate[to_generate >= first_frame]
        frames_skipped = int(((weights == 0) & faced).sum())

        size = batch_size or self.pick_batch_size()
        sync_faces: list[np.ndarray] = []
        height, width = avatar.frames.shape[1:3]
        codec = pick_video_codec(prefer_gpu=self.device.type == "cuda")
        done = first_frame
        scratch = ExitStack()
        plan = segments
        if plan is None and total > SPLIT_MIN_FRAMES and self.segment_encoders > 1:
            # Split for parallel encoders only: no resume, so batches need not stop at segment
            # boundaries (they follow `segments`, None here) and the segments need no preview audio.
            directory = scratch.enter_context(
                tempfile.TemporaryDirectory(prefix=".segments-", dir=out_path.parent)
            )
            plan = SegmentPlan(
                directory=Path(directory),
                frames_per_segment=SPLIT_SEGMENT_FRAMES,
                encoders=self.segment_encoders,
                taper=SPLIT_TAPER,
            )
        scores = None
        if segments is not None and self.scorer is not None:
            # Resumable: scored segment by segment, so a resumed render scores the whole clip.
            from runtime.engine.sync.segmented import segment_scores

            scores = segment_scores(
                self.scorer,
                audio_16k,
                avatar.fps,
                segments,
                total_frames=total,
                max_frames=MAX_SYNC_FRAMES,
            )
            if scores is not None:
                plan = replace(segments, on_segment=scores.reporting(segments.on_segment))
        writer: VideoWriter | SegmentedVideoWriter
        stream = {
            "width": width,
            "height": height,
            "fps": avatar.fps,
            "audio_path": audio,
            "codec": codec,
            "preset": self.encoder_preset,
        }
        if plan is None:
            writer = VideoWriter(out_path, **stream)
        else:
            writer = SegmentedVideoWriter(
                plan,
                out_path=out_path,
                total_frames=total,
                preview_audio=segments is not None,
                **stream,
            )
        with scratch, ThreadPoolExecutor(1, thread_name_prefix="compose") as composer, writer:
            # The source frames in the encoder's layout (see `yuv`), kept with the avatar.
            sources_i420 = self._resident.get(avatar).source_i420

            def compose_until(end: int, generated: dict[int, tuple[np.ndarray, np.ndarray]]) -> int:
                nonlocal done
                with _timed(timings, "compose"):
                    for i in range(done, end):
                        index = avatar.cycle_index(i)
                        frame, face = self._compose(
                            avatar, i, sources_i420[index], generated.get(i)
                        )
                        if scores is not None:  # before the write: sums precede the segment
                            scores.add(i, face)
                        elif self.scorer is not None and i < MAX_SYNC_FRAMES:
                            sync_faces.append(face)
                        writer.write(frame)
                done = end
                return end

            # The host composes batch k (paste into full frames, queue to the encoder) on its
            # own thread while this one runs batch k+1 on the GPU; progress is reported here.
            pending: Future[int] | None = None

            def settle() -> None:
                nonlocal pending
                if pending is not None:
                    with _timed(timings, "compose_wait"):
                        composed = pending.result()
                    pending = None
                    if progress is not None:
                        progress(composed, total)

            # Up to `pipeline_depth` batches are queued on the GPU before the oldest one is
            # waited for: batch k+1's UNet and decode are enqueued before this thread blocks on
            # batch k's blend and copy, so the GPU does not idle while the host gathers a batch.
            in_flight: deque[_Batch] = deque()

            def hand_over_oldest() -> None:
                nonlocal pending
                if stop():  # batches still on the GPU are dropped, as unlaunched ones are
                    raise Interrupted("stopped before the render finished")
                batch = in_flight.popleft()
                with _timed(timings, "gpu_wait"):
                    generated = self._collect(batch, timings)
                settle()
                end = int(batch.frames[-1]) + 1
                pending = composer.submit(compose_until, end, generated)

            position = 0
            try:
                while position < len(to_generate):
                    if stop():
                        raise Interrupted("stopped before the render finished")
                    start = position
                    limit = _frames_before_boundary(to_generate, start, segments)

                    def launch(n: int, start: int = start, limit: int = limit) -> _Batch:
                        chosen = to_generate[start : start + min(n, limit)]
                        return self._launch(avatar, tokens, weights, chosen, n)

                    wanted = self._launch_size(size, min(limit, len(to_generate) - start))
                    launched, fitted = halve_on_oom(
                        launch,
                        batch_size=wanted,
                        min_batch_size=min(min_batch_size, wanted),
                        is_oom=_is_oom,
                        free_memory=self._free_memory,
                        on_halving=on_oom_halving,
                    )
                    if fitted < wanted:  # out of memory: every later batch at the halved size
                        size = min(size, fitted)
                    position += len(launched.frames)
                    in_flight.append(launched)
                    if len(in_flight) >= max(1, self.pipeline_depth):
                        hand_over_oldest()
                while in_flight:
                    hand_over_oldest()
                settle()
            except BaseException:
                if pending is not None:  # the writer must not be abandoned under the composer
                    wait([pending])
                raise
            if stop():
                raise Interrupted("stopped before the render finished")
            compose_until(total, {})
            if progress is not None:
                progress(total, total)
            with _timed(timings, "encode_flush"):
                writer.close()
            if isinstance(writer, SegmentedVideoWriter):
                timings["remux"] = writer.remux_ms
        sync_confidence, sync_offset = None, None
        if scores is not None:
            with _timed(timings, "sync"):
                whole = scores.score()
            if whole is not None:
                sync_confidence, sync_offset = whole.confidence, whole.offset_frames
        elif self.scorer is not None and len(sync_faces) >= SYNC_WINDOW_FRAMES:
            with _timed(timings, "sync"):
                try:
                    score = self.scorer.score(np.stack(sync_faces), audio_16k, avatar.fps)
                    sync_confidence, sync_offset = float(score.confidence), score.offset_frames
                except (ValueError, RuntimeError) as error:
                    # The mp4 is complete; a missing quality score must not fail the job.
                    log.warning("sync scoring failed, no score for this render: %s", error)
        return Rendered(
            frames=total,
            fps=avatar.fps,
            duration_s=total / avatar.fps,
            weights=self.weights,
            batch_size=size,
            frames_skipped=frames_skipped,
            sync_confidence=sync_confidence,
            sync_offset_frames=sync_offset,
            low_sync=None if sync_confidence is None else sync_confidence < options.sync_threshold,
            timings_ms=timings,
            resumed_from_frame=first_frame,
        )

    def _launch_size(self, size: int, available: int) -> int:
        """How many frames the next batch is launched with (a compiled engine pads it to that):
        `size`, or for a compiled engine's last `available` frames the tail graphs' size where
        padding to `size` would waste more than a tail batch."""
        tail = self._tail_batch_size(size)
        return size if tail is None or available > size - tail else tail

    def _tail_batch_size(self, size: int) -> int | None:
        """The second graph size of a torch.compile'd engine (AOT packages have one batch)."""
        if not self.compiled or self.aot or size <= TAIL_BATCH_SIZE:
            return None
        return TAIL_BATCH_SIZE

    def _generation_weights(
        self, audio_16k: np.ndarray, total: int, fps: float, options: RenderOptions
    ) -> np.ndarray:
        if not options.skip_silence:
            return np.ones(total, dtype=np.float32)
        if self._speech is None:
            self._speech = SpeechDetector()
        return generation_weights(total, int(fps), self._speech.speech_spans(audio_16k))

    @torch.inference_mode()
    def _launch(
        self,
        avatar: PreparedAvatar,
        tokens: torch.Tensor,
        weights: np.ndarray,
        frames: np.ndarray,
        batch_size: int,
    ) -> _Batch:
        """Queue UNet + decode + blend + the copy to the host for output frames `frames`;
        returns without waiting for the GPU (`_collect` waits).

        Everything per source frame is already on the device (`ResidentCache`); the batch's
        regions come back in one pinned copy. The face RGB is copied only while the sync
        scorer still wants it.
        """
        resident = self._resident.get(avatar)
        count = len(frames)
        marks = _StageMarks(self.device)
        self._mark_graph_step()
        marks.begin()
        # A compiled model keeps one graph per shape: pad a short batch to the full size.
        padded = np.resize(frames, batch_size) if self.compiled else frames
        cycle = np.array([avatar.cycle_index(int(i)) for i in padded], dtype=np.int64)
        sources = torch.from_numpy(cycle).to(self.device)
        audio = tokens[torch.from_numpy(padded).to(tokens.device)]
        audio = audio.to(self.device, self.dtype) + self._positional
        predicted = self.generator.step(resident.latents[sources], audio)
        marks.end("unet")
        # Decoded padded too: one decoder graph for every batch of every job. Sliced first, a
        # job's short last batch compiled a graph per length (minutes under max-autotune) and,
        # past torch's recompile limit (8 shapes), ran the decoder eager.
        faces_rgb = self.codec.decode(predicted)[:count]  # [B, 3, 256, 256] uint8
        marks.end("vae_decode")
        frame_weights = weights[frames].astype(np.float32)
        fade = (
            torch.from_numpy(frame_weights).to(self.device) if (frame_weights < 1.0).any() else None
        )
        blended = resident.blend(faces_rgb.flip(1), sources[:count], fade)
        regions = _to_host(blended)
        wants_faces = self.scorer is not None and int(frames[0]) < MAX_SYNC_FRAMES
        faces = _to_host(faces_rgb.permute(0, 2, 3, 1)) if wants_faces else None
        marks.end("blend")
        sizes = resident.sizes[cycle[:count]]
        return _Batch(frames=frames, sizes=sizes, regions=regions, faces=faces, marks=marks)

    def _collect(
        self, batch: _Batch, timings: dict[str, float]
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Wait for a launched batch: {frame: (box region, face RGB or an empty array)}; its
        GPU time per stage is added to `timings`."""
        batch.marks.wait()
        batch.marks.add_to(timings)
        out = {}
        for k, frame_index in enumerate(batch.frames):
            height, width = batch.sizes[k]
            face = batch.faces[k] if batch.faces is not None else _NO_FACE
            out[int(frame_index)] = (batch.regions[k, :height, :width], face)
        return out

    def _compose(
        self,
        avatar: PreparedAvatar,
        output_frame: int,
        source_i420: I420Frame,
        generated: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[I420Frame, np.ndarray]:
        """The output frame (I420), and the 256x256 RGB mouth crop the sync scorer sees for it."""
        index = avatar.cycle_index(output_frame)
        source = avatar.frames[index]
        box = avatar.boxes[index]
        if generated is None:
            if self.scorer is None:
                return source_i420, source
            face = crop_face(source, box) if avatar.has_face[index] else _resize_256(source)
            return source_i420, np.ascontiguousarray(face[..., ::-1])
        region, face_rgb = generated
        height, width = source.shape[:2]
        x1, y1, x2, y2 = (int(v) for v in box)
        vx1, vy1, _vx2, _vy2 = PasteBox(x1, y1, x2, y2, width, height).visible
        return paste_region(source_i420, source, region, vx1, vy1), face_rgb

    def _free_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


@dataclass(frozen=True, eq=False)
class _Batch:
    """A batch queued on the device by `_launch`; its host arrays are valid once `marks.wait()`
    returned."""

    frames: np.ndarray  # output frame indices
    sizes: np.ndarray  # [B, 2] visible (height, width) of each frame's region
    regions: np.ndarray  # [B, H, W, 3] uint8 blended regions (padded), host memory
    faces: np.ndarray | None  # [B, 256, 256, 3] uint8 RGB faces, if the sync scorer wants them
    marks: _StageMarks


class _StageMarks:
    """Stage boundaries of one batch: CUDA events on a GPU (read once the batch is done, so
    timing never makes the host wait between stages), the wall clock on the CPU (where every
    stage runs to completion when called)."""

    def __init__(self, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        self._marks: list[tuple[str, torch.cuda.Event | float]] = []

    def begin(self) -> None:
        self._marks.append(("", self._now()))

    def end(self, stage: str) -> None:
        self._marks.append((stage, self._now()))

    def wait(self) -> None:
        last = self._marks[-1][1]
        if isinstance(last, torch.cuda.Event):
            last.synchronize()

    def add_to(self, timings: dict[str, float]) -> None:
        for (_, start), (stage, end) in itertools.pairwise(self._marks):
            if isinstance(start, torch.cuda.Event) and isinstance(end, torch.cuda.Event):
                elapsed = start.elapsed_time(end)
            else:
                elapsed = (float(end) - float(start)) * 1000  # type: ignore[arg-type]
            timings[stage] = timings.get(stage, 0.0) + elapsed

    def _now(self) -> torch.cuda.Event | float:
        if not self._cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event


def _frames_before_boundary(
    to_generate: np.ndarray, position: int, segments: SegmentPlan | None
) -> int:
    """How many of `to_generate[position:]` a batch may take without crossing into the next
    segment (all of them when not segmented)."""
    if segments is None:
        return len(to_generate) - position
    size = segments.frames_per_segment
    boundary = (int(to_generate[position]) // size + 1) * size
    return int(np.searchsorted(to_generate, boundary)) - position


def split_compile_mode(mode: str | None) -> tuple[str | None, str | None]:
    """`compile_mode` -> (UNet mode, VAE decoder mode). One torch.compile mode applies to
    both; "UNET/DECODER" gives each its own (e.g. "reduce-overhead/max-autotune"). "default"
    and None are torch's default mode."""
    parts = (mode or "default").split("/")
    if len(parts) > 2 or not all(part in COMPILE_MODES for part in parts):
        raise ValueError(
            f"compile mode {mode!r}: expected one of {sorted(COMPILE_MODES)} or UNET/DECODER"
        )
    unet, decoder = parts[0], parts[-1]
    return (None if unet == "default" else unet, None if decoder == "default" else decoder)


def compile_for_speed(generator: Generator, codec: LatentCodec, *, mode: str | None = None) -> None:
    """`torch.compile` the UNet and the VAE decoder in place (the two per-frame models), each
    in its mode of `split_compile_mode(mode)`.

    About 1.5x faster per frame than eager, at 54 dB PSNR against it. Their upsamplers come
    folded (see `LatentCodec`), which the compiled decoder runs about 10% faster.
    """
    unet_mode, decoder_mode = split_compile_mode(mode)
    generator.unet = torch.compile(generator.unet, dynamic=False, mode=unet_mode)
    codec.vae.decoder = torch.compile(codec.vae.decoder, dynamic=False, mode=decoder_mode)


def static_batch_size(device: torch.device, dtype: torch.dtype) -> int:
    """The batch AOT packages are built for: what the card's whole memory holds beside the
    models (its free memory would vary with what else runs, and so would the packages' key)."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    total = torch.cuda.get_device_properties(device).total_memory
    return batch_size_for_memory(total - AOT_MODELS_BYTES, dtype)


def aot_packages_dir(
    models_dir: Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> tuple[aot.AotKey, Path]:
    """The key and local directory of the AOT packages `load(models_dir, device, dtype,
    compile_models=True)` uses (with the default cache directory): where a worker puts the
    packages it downloads."""
    device, dtype = _device_and_dtype(device, dtype)
    key = aot.AotKey.for_models(
        ModelsLayout(models_dir), device, dtype, static_batch_size(device, dtype)
    )
    return key, aot.packages_dir(default_cache_dir(models_dir), key)


def _device_and_dtype(
    device: torch.device | str | None, dtype: torch.dtype | str | None
) -> tuple[torch.device, torch.dtype]:
    """Strings too: the worker and local mode pass MUSETALK_DEVICE / MUSETALK_DTYPE as set."""
    device = torch.device(device) if isinstance(device, str) else device
    dtype = _torch_dtype(dtype) if isinstance(dtype, str) else dtype
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    return device, dtype


def _aot_models(
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
            with _timed(timings, "aot_build", device):
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
        with _timed(timings, "aot_load", device):
            models = aot_load.load_models(directory, device, dtype, batch, eager_codec=eager_codec)
        aot_load.end_load_attempt(directory)
        return models
    except aot.AotUnavailableError as error:
        log.warning(
            "AOT packages in %s unusable (%s); removed, using torch.compile", directory, error
        )
        shutil.rmtree(directory, ignore_errors=True)
        return None


def batch_size_for_memory(free_bytes: int, dtype: torch.dtype) -> int:
    """Frames per UNet + decode batch that fit in `free_bytes`, keeping a reserve, 1..64."""
    per_item = GPU_BYTES_PER_ITEM.get(dtype, GPU_BYTES_PER_ITEM[torch.float32])
    return int(np.clip((free_bytes - GPU_RESERVED_BYTES) // per_item, 1, MAX_GPU_BATCH_SIZE))


def crop_face(frame: np.ndarray, box: Sequence[int] | np.ndarray) -> np.ndarray:
    """Spec §3.7: frame[y1:y2, x1:x2] stretched to 256x256 with LANCZOS4 (aspect not kept)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return _resize_256(frame[y1:y2, x1:x2])


def _resize_256(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LANCZOS4)


def mask_over_box(
    mask: np.ndarray, crop_box: tuple[int, int, int, int], box: Sequence[int] | np.ndarray
) -> np.ndarray:
    """The part of the crop-box mask under the paste box: outside it the blend changes nothing."""
    cx1, cy1 = crop_box[0], crop_box[1]
    x1, y1, x2, y2 = (int(v) for v in box)
    region = mask[y1 - cy1 : y2 - cy1, x1 - cx1 : x2 - cx1]
    if region.shape != (y2 - y1, x2 - x1):
        raise ValueError("the blend mask's crop box does not contain the face box")
    return np.ascontiguousarray(region, dtype=np.uint8)


@contextmanager
def _timed(
    timings: dict[str, float], stage: str, device: torch.device | None = None
) -> Iterator[None]:
    """Add the stage's wall time (ms) to `timings`; syncs CUDA so GPU work is counted."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000


def _to_host(tensor: torch.Tensor) -> np.ndarray:
    """One copy to host memory; from CUDA into a fresh pinned buffer, without waiting (the
    caller synchronizes once for all copies). Fresh per batch: the composer thread may still be
    reading the previous batch's regions."""
    if tensor.device.type != "cuda":
        return tensor.contiguous().numpy()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host.numpy()


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError)


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
