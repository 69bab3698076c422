"""`MuseTalkEngine`: load once, prepare avatars once, speak many times (spec §2-§8).

The facade over the engine's parts: `model_loading` (which models, eager, compiled or AOT
packages), `avatar_preparation` (`prepare`: decode, locate faces, crop 256x256, VAE-encode,
blend masks), `speak_pipeline` (`speak`: audio tokens, silence, batches in flight, composing
and encoding). What stays here is the engine's state and its per-batch model work: UNet + VAE
decode + blend on the device for a batch (`launch_batch`, `collect_batch`) and a frame's
composition (`compose_frame`), which `speak_pipeline` orders and the benchmarks time alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import torch

from runtime.engine import aot_adapters, aot_prepare, frame_compose
from runtime.engine.audio import D_MODEL, TOKENS_PER_FRAME, AudioEncoder, positional_encoding
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.avatar_preparation import MAX_AVATAR_FRAMES, AvatarPreparer
from runtime.engine.batch_sizes import CPU_BATCH_SIZE, TAIL_BATCH_SIZE, batch_size_for_memory
from runtime.engine.compile_cache import artifacts_path, load_artifacts, save_artifacts
from runtime.engine.compile_modes import (
    CUDA_GRAPH_MODES,
    DEFAULT_COMPILE_MODE,
    compile_for_speed,
    split_compile_mode,
)
from runtime.engine.encoder_presets import DEFAULT_PRESET
from runtime.engine.engine_contract import (
    PreparedAvatarFormatError,
    PreparedAvatarLike,
    ProgressFn,
    Rendered,
    SegmentPlan,
    WeightsKind,
)
from runtime.engine.face_sync_protocols import FaceLocatorLike, FaceParserLike, SyncScorerLike
from runtime.engine.latents import LATENT_SIZE, Generator, LatentCodec
from runtime.engine.layout import ModelsLayout
from runtime.engine.model_loading import device_and_dtype, load_models
from runtime.engine.options import MODEL_VERSION, AvatarOptions, RenderOptions
from runtime.engine.resident import ResidentAvatar, ResidentCache
from runtime.engine.speak_pipeline import (
    MAX_SYNC_FRAMES,
    PIPELINE_DEPTH,
    Batch,
    SpeakRequest,
    speak,
    to_host,
)
from runtime.engine.stage_timing import StageMarks, timed
from runtime.engine.untrusted import DecodeLimits
from runtime.engine.vad import SpeechDetector, generation_weights
from runtime.engine.video_encoding import VideoEncoding, pick_video_encoding
from runtime.engine.weight_cache import default_cache_dir
from runtime.engine.yuv import I420Frame

log = logging.getLogger(__name__)


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
        encoder_preset: str = DEFAULT_PRESET,
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
        # Preparation's compiled code and AOT packages (`compile_preparation`,
        # `use_prepare_packages`); the packages' load times once attached.
        self._preparer = AvatarPreparer(self)
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
        encoder_preset: str = DEFAULT_PRESET,
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
        device, dtype = device_and_dtype(device, dtype)
        cache_dir = cache_dir or default_cache_dir(models_dir)
        timings: dict[str, float] = {}
        models = load_models(
            models_dir,
            device,
            dtype,
            locator=locator,
            parser=parser,
            scorer=scorer,
            compile_models=compile_models,
            aot_packages=aot_packages,
            cache_dir=cache_dir,
            timings=timings,
        )
        engine = cls(
            generator=models.generator,
            codec=models.codec,
            audio_encoder=models.audio_encoder,
            locator=models.locator,
            parser=models.parser,
            scorer=models.scorer,
            weights=models.weights,
            device=device,
            dtype=dtype,
            encoder_preset=encoder_preset,
            compile_models=models.compile_models,
            compile_mode=compile_mode,
            cache_dir=cache_dir,
            segment_encoders=segment_encoders,
        )
        if models.packages is not None and aot_prepare.section(models.packages) is not None:
            engine.use_prepare_packages(models.packages, models.layout)
        if models.compile_models and not engine.aot:  # packages ran (and captured graphs) on load
            with timed(timings, "compile", device):
                engine.warm_up(engine.pick_batch_size())
        engine.load_timings_ms = timings
        log.info(
            "engine loaded: timings %s, weight cache hits %s",
            {k: round(v) for k, v in timings.items()},
            models.cache.hits,
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
    def video_encoding(self) -> VideoEncoding:
        """What `speak` encodes with: NVENC where it opens on a CUDA device, else libx264."""
        return pick_video_encoding(
            prefer_gpu=self.device.type == "cuda", preset=self.encoder_preset
        )

    @property
    def output_encoding(self) -> str:
        """`video_encoding`'s name: a worker resumes segments only under the same one."""
        return self.video_encoding.name

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

        On CUDA by default the avatar goes through in chunks of PREPARE_CHUNK_FRAMES
        (`avatar_preparation`), stage after stage on one stream with the decoding a chunk ahead
        on its own thread
        (`decode_ahead`; stages overlapped on three streams, `overlap`, slow each other down to
        about half the speed), cuDNN's autotuner on for the chunks' fixed shapes, and each
        chunk goes to the device once, where the face models' pre- and post-processing runs
        batched (`device_ops`); on CPU one chunk, stage after stage, with the host (OpenCV/PIL) pre-
        and post-processing of upstream. `overlap` / `chunk_frames` / `device_ops` /
        `decode_ahead` override that (tests, benchmark); see also `compile_preparation`.
        Every frame is decoded within `limits` (`avatar_reader.AvatarReader`); `should_stop` ends
        preparation with `Interrupted` within a frame of decoding or a chunk of the stages.
        """
        return self._preparer.prepare(
            avatar_media,
            options,
            overlap=overlap,
            chunk_frames=chunk_frames,
            device_ops=device_ops,
            decode_ahead=decode_ahead,
            limits=limits,
            should_stop=should_stop,
        )

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
        return self._preparer.compile(mode, cache_dir=cache_dir, backend=backend)

    def use_prepare_packages(self, directory: Path, layout: ModelsLayout) -> None:
        """Run S3FD and the VAE encoder in `prepare` from the AOT packages in `directory`
        (`aot_prepare`: what `compile_preparation` compiles, with no compiler needed here).
        Attached on the first `prepare`, which loads the eager VAE for its encoder anyway, so
        the engine's cold start does not pay for it."""
        self._preparer.use_packages(directory, layout)

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
        it, a clip longer than SPLIT_MIN_FRAMES (`speak_pipeline`) is still written as segments
        in a scratch directory beside `out_path` when `segment_encoders` > 1, so that many
        encoders share the work (for hosts where one encoder is slower than the GPU path).
        """
        if not isinstance(prepared, PreparedAvatar):
            raise TypeError("speak needs a PreparedAvatar from this engine")
        request = SpeakRequest(
            audio=audio,
            out_path=out_path,
            options=options,
            batch_size=batch_size,
            min_batch_size=min_batch_size,
            progress=progress,
            on_oom_halving=on_oom_halving,
            should_stop=should_stop,
            segments=segments,
        )
        return speak(self, prepared, request)

    def resident_avatar(self, avatar: PreparedAvatar) -> ResidentAvatar:
        """What `speak` keeps of the avatar on the device (latents, masks, I420 sources)."""
        return self._resident.get(avatar)

    def launch_size(self, size: int, available: int) -> int:
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

    def frame_weights(
        self, audio_16k: np.ndarray, total: int, fps: float, options: RenderOptions
    ) -> np.ndarray:
        """Each output frame's weight of the generated face (`vad`): 1 everywhere, or with
        `skip_silence` 0 in silence (the source frame) and fading in and out around speech."""
        if not options.skip_silence:
            return np.ones(total, dtype=np.float32)
        if self._speech is None:
            self._speech = SpeechDetector()
        return generation_weights(total, int(fps), self._speech.speech_spans(audio_16k))

    @torch.inference_mode()
    def launch_batch(
        self,
        avatar: PreparedAvatar,
        tokens: torch.Tensor,
        weights: np.ndarray,
        frames: np.ndarray,
        batch_size: int,
    ) -> Batch:
        """Queue UNet + decode + blend + the copy to the host for output frames `frames`;
        returns without waiting for the GPU (`collect_batch` waits).

        Everything per source frame is already on the device (`ResidentCache`); the batch's
        regions come back in one pinned copy. The face RGB is copied only while the sync
        scorer still wants it.
        """
        resident = self.resident_avatar(avatar)
        count = len(frames)
        marks = StageMarks(self.device)
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
        regions = to_host(blended)
        wants_faces = self.scorer is not None and int(frames[0]) < MAX_SYNC_FRAMES
        faces = to_host(faces_rgb.permute(0, 2, 3, 1)) if wants_faces else None
        marks.end("blend")
        sizes = resident.sizes[cycle[:count]]
        return Batch(frames=frames, sizes=sizes, regions=regions, faces=faces, marks=marks)

    def collect_batch(
        self, batch: Batch, timings: dict[str, float]
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Wait for a launched batch: {frame: (box region, face RGB or an empty array)}; its
        GPU time per stage is added to `timings`."""
        batch.marks.wait()
        batch.marks.add_to(timings)
        out = {}
        for k, frame_index in enumerate(batch.frames):
            height, width = batch.sizes[k]
            face = batch.faces[k] if batch.faces is not None else frame_compose.NO_FACE
            out[int(frame_index)] = (batch.regions[k, :height, :width], face)
        return out

    def compose_frame(
        self,
        avatar: PreparedAvatar,
        output_frame: int,
        source_i420: I420Frame,
        generated: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[I420Frame, np.ndarray]:
        """The output frame (I420), and the 256x256 RGB mouth crop the sync scorer sees for it."""
        return frame_compose.compose_frame(
            avatar, output_frame, source_i420, generated, scored=self.scorer is not None
        )
