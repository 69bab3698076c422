"""A small engine with the `LipSyncEngine` interface, for testing the worker without a model.

It really decodes the avatar (video or image) with PyAV, "speaks" by drawing a mouth whose opening
follows the audio's loudness on one frame per 1/fps of audio, and writes an H.264 (yuv420p,
faststart) mp4 with the audio muxed as AAC; with a `SegmentPlan` it writes through the real
engine's segment writer, from `start_frame` on. Knobs make the worker's hard paths reachable: an
out-of-memory error above a batch size, a per-frame delay so a SIGTERM lands mid-render, a
prepare delay so one lands mid-prepare, and a transient failure (before or mid-render). Like the
real engine it refuses an avatar without a face (here: frames of one flat colour) and audio
without speech (here: digital silence), so poison inputs get their own error codes.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from runtime.engine.encoder_presets import DEFAULT_PRESET
from runtime.engine.engine_contract import (
    Failure,
    Interrupted,
    MediaError,
    PreparedAvatarFormatError,
    ProgressFn,
    Rendered,
    SegmentPlan,
    WeightsKind,
    halve_on_oom,
)
from runtime.engine.options import AvatarOptions, RenderOptions
from runtime.engine.segments import SegmentedVideoWriter
from runtime.engine.untrusted import DecodeLimits
from runtime.engine.video_encoding import pick_video_encoding

SIZE = 64  # frames are tiny: the point is the pipeline, not the picture
MAX_AVATAR_FRAMES = 25
FLAT_FRAME_STD = 1.0  # pixel standard deviation below which a frame is "no face"
SILENCE_PEAK = 1e-3  # peak amplitude below which audio is "no speech"
AUDIO_RATE = 16_000
FPS = 25
AAC_FRAME_SIZE = 1024


class SmallOutOfMemory(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError."""


class TransientFailure(RuntimeError):
    """Stands in for a flaky dependency (network, driver hiccup)."""


@dataclass(frozen=True)
class SmallPrepared:
    frames: np.ndarray  # (n, SIZE, SIZE, 3) uint8

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, self.frames, allow_pickle=False)
        return buffer.getvalue()


class SmallEngine:
    model_version = "small-engine-v1"

    def __init__(
        self,
        *,
        default_batch_size: int = 16,
        oom_above: int | None = None,
        seconds_per_frame: float = 0.0,
        prepare_seconds: float = 0.0,
        transient_failures: int = 0,
        weights: WeightsKind = "random",
        fail_at_frame: int | None = None,
        encoder_preset: str = DEFAULT_PRESET,
        reported_encoding: str | None = None,
    ) -> None:
        self.weights: WeightsKind = weights
        # The segment writer's, picked as the real engine's (on the CPU: libx264 and the preset).
        self.video_encoding = pick_video_encoding(prefer_gpu=False, preset=encoder_preset)
        # Reported instead of its own when it stands in for an encoder the test host lacks
        # (NVENC): its segments still differ from another preset's, as NVENC's do.
        self._reported_encoding = reported_encoding
        self.default_batch_size = default_batch_size
        self.oom_above = oom_above
        self.seconds_per_frame = seconds_per_frame
        self.prepare_seconds = prepare_seconds
        self.transient_failures = transient_failures
        self.prepare_calls = 0
        self.prepare_limits: DecodeLimits | None = None  # what the worker passed last
        self.speak_calls = 0
        self.batch_sizes: list[int] = []
        # Segmented renders: a crash-like failure once this many frames are drawn (once), and a
        # hook after each batch with the frames done (tests request a stop there, as SIGTERM).
        self.fail_at_frame = fail_at_frame
        self.after_batch: Callable[[int], None] | None = None
        self.rendered_from: list[int] = []  # segmented renders: the frame each one started at
        self.frames_rendered = 0  # segmented renders: frames drawn (not reused from segments)

    @property
    def output_encoding(self) -> str:
        return self._reported_encoding or self.video_encoding.name

    def prepare(
        self,
        avatar_media: Path,
        options: AvatarOptions,
        *,
        limits: DecodeLimits | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> SmallPrepared:
        self.prepare_calls += 1
        self.prepare_limits = limits
        # simulated face detection and VAE encoding, stopped as the real engine stops
        deadline = time.monotonic() + self.prepare_seconds
        while time.monotonic() < deadline:
            if should_stop is not None and should_stop():
                raise Interrupted("stopped while preparing the avatar")
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        frames = []
        try:
            with av.open(str(avatar_media)) as container:
                if not container.streams.video:
                    raise MediaError(Failure.INVALID_MEDIA, "avatar: no video stream")
                for frame in container.decode(video=0):
                    frames.append(frame.to_ndarray(width=SIZE, height=SIZE, format="rgb24"))
                    if len(frames) >= MAX_AVATAR_FRAMES:
                        break
        except av.FFmpegError:
            raise MediaError(
                Failure.INVALID_MEDIA, "avatar: not a readable image or video"
            ) from None
        if not frames:
            raise MediaError(Failure.NO_FACE, "avatar: no frames")
        stacked = np.stack(frames)
        if all(float(frame.std()) < FLAT_FRAME_STD for frame in stacked):
            raise MediaError(Failure.NO_FACE, "avatar: no face found in any frame")
        return SmallPrepared(stacked)

    def load_prepared(self, data: bytes) -> SmallPrepared:
        try:
            return SmallPrepared(np.load(io.BytesIO(data), allow_pickle=False))
        except (ValueError, OSError, EOFError) as error:  # as the interface asks: a cache miss
            raise PreparedAvatarFormatError(f"not a small-engine avatar: {error}") from error

    def speak(
        self,
        prepared: SmallPrepared,  # type: ignore[override]
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
        self.speak_calls += 1
        if self.transient_failures > 0:
            self.transient_failures -= 1
            raise TransientFailure("injected transient failure")
        samples = _decode_mono(audio)
        if float(np.abs(samples).max()) < SILENCE_PEAK:
            raise MediaError(Failure.NO_SPEECH, "audio: no speech found")
        total = max(1, math.ceil(len(samples) * FPS / AUDIO_RATE))
        loudness = _loudness_per_frame(samples, total, FPS)
        size = batch_size or self.default_batch_size
        done = start = 0 if segments is None else min(segments.start_frame, total)
        if segments is not None:
            self.rendered_from.append(start)
        if progress:
            progress(done, total)
        encode_seconds = 0.0
        with self._writer(out_path, audio, total, segments) as write:
            while done < total:
                if self.fail_at_frame is not None and done >= self.fail_at_frame:
                    self.fail_at_frame = None
                    raise TransientFailure("injected crash mid-render")
                if should_stop is not None and should_stop():
                    raise Interrupted
                begin = done

                def step(n: int, begin: int = begin) -> list[np.ndarray]:
                    if self.oom_above is not None and n > self.oom_above:
                        raise SmallOutOfMemory(f"batch {n} does not fit")
                    count = min(n, total - begin)
                    time.sleep(self.seconds_per_frame * count)  # simulated GPU work
                    return [_draw(prepared, begin + i, loudness[begin + i]) for i in range(count)]

                frames, size = halve_on_oom(
                    step,
                    batch_size=size,
                    min_batch_size=min_batch_size,
                    is_oom=lambda error: isinstance(error, SmallOutOfMemory),
                    on_halving=on_oom_halving,
                )
                self.batch_sizes.append(size)
                began = time.monotonic()
                for image in frames:
                    write(image)
                encode_seconds += time.monotonic() - began
                done += len(frames)
                self.frames_rendered += len(frames)
                if progress:
                    progress(done, total)
                if self.after_batch is not None:
                    self.after_batch(done)
        return Rendered(
            frames=total,
            fps=float(FPS),
            duration_s=len(samples) / AUDIO_RATE,
            weights=self.weights,
            batch_size=size,
            sync_confidence=0.8,
            timings_ms={"encode": encode_seconds * 1000},
            resumed_from_frame=start,
        )

    @contextmanager
    def _writer(
        self, out_path: Path, audio: Path, total: int, segments: SegmentPlan | None
    ) -> Iterator[Callable[[np.ndarray], None]]:
        """Where RGB frames go: one mp4 (H.264 + AAC), or the real engine's segment writer."""
        if segments is not None:
            with SegmentedVideoWriter(
                segments,
                out_path=out_path,
                total_frames=total,
                width=SIZE,
                height=SIZE,
                fps=FPS,
                audio_path=audio,
                codec=self.video_encoding.codec,
                preset=self.video_encoding.preset,
            ) as segmented:
                yield lambda image: segmented.write(np.ascontiguousarray(image[..., ::-1]))
            return
        with av.open(str(out_path), "w", options={"movflags": "+faststart"}) as output:
            video = output.add_stream("libx264", rate=FPS)
            video.width = video.height = SIZE
            video.pix_fmt = "yuv420p"
            sound = output.add_stream("aac", rate=AUDIO_RATE)
            sound.layout = "mono"
            yield lambda image: output.mux(
                video.encode(av.VideoFrame.from_ndarray(image, format="rgb24"))
            )
            output.mux(video.encode(None))
            _mux_audio(output, sound, audio)


def load(models_dir: Path, device: str, dtype: str) -> SmallEngine:
    """Engine factory for `MUSETALK_ENGINE_FACTORY=tests.support.small_engine:load`."""
    oom_above = os.environ.get("SMALL_ENGINE_OOM_ABOVE")
    return SmallEngine(
        oom_above=int(oom_above) if oom_above else None,
        seconds_per_frame=float(os.environ.get("SMALL_ENGINE_SECONDS_PER_FRAME", "0")),
        prepare_seconds=float(os.environ.get("SMALL_ENGINE_PREPARE_SECONDS", "0")),
    )


def _decode_mono(path: Path) -> np.ndarray:
    try:
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
            chunks = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(audio=0)
                for out in resampler.resample(frame)
            ]
    except (av.FFmpegError, IndexError):
        raise MediaError(Failure.INVALID_MEDIA, "audio: not a readable audio file") from None
    if not chunks:
        raise MediaError(Failure.NO_SPEECH, "audio: no samples")
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def _loudness_per_frame(samples: np.ndarray, total: int, fps: int) -> list[float]:
    per_frame = AUDIO_RATE // fps
    levels = []
    for index in range(total):
        window = samples[index * per_frame : (index + 1) * per_frame]
        levels.append(float(np.sqrt(np.mean(window**2))) if window.size else 0.0)
    peak = max(levels) or 1.0
    return [level / peak for level in levels]


def _draw(prepared: SmallPrepared, index: int, loudness: float) -> np.ndarray:
    image = prepared.frames[index % len(prepared.frames)].copy()
    opening = 1 + int(loudness * SIZE // 6)
    centre = SIZE * 3 // 4
    image[centre - opening // 2 : centre + opening // 2 + 1, SIZE // 3 : SIZE * 2 // 3] = 0
    return image


def _mux_audio(output: av.container.OutputContainer, stream: Any, audio: Path) -> None:
    resampler = av.AudioResampler(
        format="fltp", layout="mono", rate=AUDIO_RATE, frame_size=AAC_FRAME_SIZE
    )
    with av.open(str(audio)) as source:
        for frame in source.decode(audio=0):
            for chunk in resampler.resample(frame):
                output.mux(stream.encode(chunk))
    for chunk in resampler.resample(None):
        output.mux(stream.encode(chunk))
    output.mux(stream.encode(None))
