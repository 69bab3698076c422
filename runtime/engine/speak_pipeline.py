"""One `MuseTalkEngine.speak`: audio tokens and silence, the output writer (one mp4, or
segments), the batches in flight on the device and the frames composed and written on a
thread beside them, and the sync score of what was written.

The engine's per-batch primitives (`launch_batch`, `collect_batch`, `compose_frame`) do the
model work; `SpeakPipeline` owns the order: up to `pipeline_depth` batches queued on the GPU,
the oldest handed to the composer while the next runs, the stop and OOM-halving rules between
batches.
"""

from __future__ import annotations

import logging
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from runtime.engine.audio import frame_count, load_audio_16k
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.batch_sizes import free_memory, is_oom
from runtime.engine.engine_contract import (
    SEGMENT_FRAMES,
    Failure,
    Interrupted,
    MediaError,
    ProgressFn,
    Rendered,
    SegmentPlan,
    halve_on_oom,
)
from runtime.engine.media import VideoWriter
from runtime.engine.options import RenderOptions
from runtime.engine.segments import SegmentedVideoWriter
from runtime.engine.stage_timing import StageMarks, timed

if TYPE_CHECKING:
    from runtime.engine.engine import MuseTalkEngine
    from runtime.engine.sync.segmented import SegmentScores

log = logging.getLogger(__name__)

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
MAX_SYNC_FRAMES = 750  # score at most the first 30 s at 25 fps: crops are 192 KiB each
SYNC_WINDOW_FRAMES = 16  # SyncNet sees 16 consecutive frames (spec §9); shorter clips get no score

Generated = dict[int, tuple[np.ndarray, np.ndarray]]  # frame: (box region, face RGB or empty)


@dataclass(frozen=True, eq=False)
class Batch:
    """A batch queued on the device by `MuseTalkEngine.launch_batch`; its host arrays are valid once
    `marks.wait()` returned."""

    frames: np.ndarray  # output frame indices
    sizes: np.ndarray  # [B, 2] visible (height, width) of each frame's region
    regions: np.ndarray  # [B, H, W, 3] uint8 blended regions (padded), host memory
    faces: np.ndarray | None  # [B, 256, 256, 3] uint8 RGB faces, if the sync scorer wants them
    marks: StageMarks


def to_host(tensor: torch.Tensor) -> np.ndarray:
    """One copy to host memory; from CUDA into a fresh pinned buffer, without waiting (the
    caller synchronizes once for all copies). Fresh per batch: the composer thread may still be
    reading the previous batch's regions."""
    if tensor.device.type != "cuda":
        return tensor.contiguous().numpy()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host.numpy()


def frames_before_boundary(
    to_generate: np.ndarray, position: int, segments: SegmentPlan | None
) -> int:
    """How many of `to_generate[position:]` a batch may take without crossing into the next
    segment (all of them when not segmented)."""
    if segments is None:
        return len(to_generate) - position
    size = segments.frames_per_segment
    boundary = (int(to_generate[position]) // size + 1) * size
    return int(np.searchsorted(to_generate, boundary)) - position


@dataclass(frozen=True)
class SpeakRequest:
    """`speak`'s arguments past the avatar (see `MuseTalkEngine.speak`)."""

    audio: Path
    out_path: Path
    options: RenderOptions
    batch_size: int | None = None
    min_batch_size: int = 1
    progress: ProgressFn | None = None
    on_oom_halving: Callable[[int], None] | None = None
    should_stop: Callable[[], bool] | None = None
    segments: SegmentPlan | None = None

    def stopped(self) -> bool:
        return self.should_stop is not None and self.should_stop()


def speak(engine: MuseTalkEngine, avatar: PreparedAvatar, request: SpeakRequest) -> Rendered:
    """Render `request.audio` on the avatar (see `MuseTalkEngine.speak`)."""
    segments, options = request.segments, request.options
    if segments is not None and segments.taper:
        raise ValueError("a tapered plan is speak's own split; a resumable plan cannot taper")
    timings: dict[str, float] = {}
    with timed(timings, "audio"):
        audio_16k = load_audio_16k(request.audio)
        total = frame_count(len(audio_16k), avatar.fps)
        if total == 0:
            raise MediaError(Failure.NO_SPEECH, "the audio is shorter than one video frame")
        tokens = engine.audio_encoder.frame_tokens(audio_16k, avatar.fps)
    with timed(timings, "vad"):
        weights = engine.frame_weights(audio_16k, total, avatar.fps, options)
    faced = np.array([avatar.has_face[avatar.cycle_index(i)] for i in range(total)])
    first_frame = 0 if segments is None else min(segments.start_frame, total)
    to_generate = np.flatnonzero((weights > 0) & faced)
    to_generate = to_generate[to_generate >= first_frame]
    scratch = ExitStack()
    scores = _segment_scores(engine, audio_16k, avatar.fps, segments, total)
    plan = _output_plan(engine, request, scratch, total, scores)
    writer = _writer(engine, avatar, request, plan, total)
    with scratch, ThreadPoolExecutor(1, thread_name_prefix="compose") as composer, writer:
        pipeline = SpeakPipeline(
            engine,
            avatar,
            request,
            writer,
            composer,
            timings,
            first_frame=first_frame,
            total=total,
            scores=scores,
        )
        size = pipeline.generate(to_generate, tokens, weights)
        pipeline.finish()
    confidence, offset = _sync_score(engine, pipeline, scores, audio_16k, avatar.fps, timings)
    return Rendered(
        frames=total,
        fps=avatar.fps,
        duration_s=total / avatar.fps,
        weights=engine.weights,
        batch_size=size,
        frames_skipped=int(((weights == 0) & faced).sum()),
        sync_confidence=confidence,
        sync_offset_frames=offset,
        low_sync=None if confidence is None else confidence < options.sync_threshold,
        timings_ms=timings,
        resumed_from_frame=first_frame,
    )


class SpeakPipeline:
    """The batches of one render: launched on the device up to `engine.pipeline_depth` ahead,
    the oldest collected and handed to the composer thread, which pastes its frames (and the
    source frames before them) into the output in order and writes them."""

    def __init__(
        self,
        engine: MuseTalkEngine,
        avatar: PreparedAvatar,
        request: SpeakRequest,
        writer: VideoWriter | SegmentedVideoWriter,
        composer: ThreadPoolExecutor,
        timings: dict[str, float],
        *,
        first_frame: int,
        total: int,
        scores: SegmentScores | None,
    ) -> None:
        self._engine = engine
        self._avatar = avatar
        self._request = request
        self._writer = writer
        self._composer = composer
        self._timings = timings
        # The source frames in the encoder's layout (see `yuv`), kept with the avatar.
        self._sources_i420 = engine.resident_avatar(avatar).source_i420
        self._in_flight: deque[Batch] = deque()
        self._pending: Future[int] | None = None  # the composer's batch: up to which frame
        self._done = first_frame  # frames written
        self._total = total
        self._scores = scores  # a resumable render's, per segment
        self.sync_faces: list[np.ndarray] = []  # for the whole-clip score (no segment scores)

    def generate(self, to_generate: np.ndarray, tokens: torch.Tensor, weights: np.ndarray) -> int:
        """Launch every frame of `to_generate` in batches, hand each over as the pipeline
        fills; the batch size the render ended at (halved on out-of-memory)."""
        engine, request = self._engine, self._request
        size = request.batch_size or engine.pick_batch_size()
        position = 0
        try:
            while position < len(to_generate):
                if request.stopped():
                    raise Interrupted("stopped before the render finished")
                start = position
                limit = frames_before_boundary(to_generate, start, request.segments)

                def launch(n: int, start: int = start, limit: int = limit) -> Batch:
                    chosen = to_generate[start : start + min(n, limit)]
                    return engine.launch_batch(self._avatar, tokens, weights, chosen, n)

                wanted = engine.launch_size(size, min(limit, len(to_generate) - start))
                launched, fitted = halve_on_oom(
                    launch,
                    batch_size=wanted,
                    min_batch_size=min(request.min_batch_size, wanted),
                    is_oom=is_oom,
                    free_memory=lambda: free_memory(engine.device),
                    on_halving=request.on_oom_halving,
                )
                if fitted < wanted:  # out of memory: every later batch at the halved size
                    size = min(size, fitted)
                position += len(launched.frames)
                self._in_flight.append(launched)
                if len(self._in_flight) >= max(1, engine.pipeline_depth):
                    self._hand_over_oldest()
            while self._in_flight:
                self._hand_over_oldest()
            self._settle()
        except BaseException:
            if self._pending is not None:  # the writer must not be abandoned under the composer
                wait([self._pending])
            raise
        return size

    def finish(self) -> None:
        """The source frames after the last generated one, then the encoder's flush."""
        if self._request.stopped():
            raise Interrupted("stopped before the render finished")
        self._compose_until(self._total, {})
        if self._request.progress is not None:
            self._request.progress(self._total, self._total)
        with timed(self._timings, "encode_flush"):
            self._writer.close()
        if isinstance(self._writer, SegmentedVideoWriter):
            self._timings["remux"] = self._writer.remux_ms

    def _hand_over_oldest(self) -> None:
        """Wait for the oldest batch on the device, then give it to the composer (once the
        composer is done with the one before: frames are written in order)."""
        if self._request.stopped():  # batches still on the GPU are dropped, as unlaunched ones
            raise Interrupted("stopped before the render finished")
        batch = self._in_flight.popleft()
        with timed(self._timings, "gpu_wait"):
            generated = self._engine.collect_batch(batch, self._timings)
        self._settle()
        end = int(batch.frames[-1]) + 1
        self._pending = self._composer.submit(self._compose_until, end, generated)

    def _settle(self) -> None:
        """Wait for the composer's batch, and report the progress it made."""
        if self._pending is None:
            return
        with timed(self._timings, "compose_wait"):
            composed = self._pending.result()
        self._pending = None
        if self._request.progress is not None:
            self._request.progress(composed, self._total)

    def _compose_until(self, end: int, generated: Generated) -> int:
        """Compose and write frames up to `end` (on the composer thread)."""
        engine, avatar, scores = self._engine, self._avatar, self._scores
        with timed(self._timings, "compose"):
            for i in range(self._done, end):
                index = avatar.cycle_index(i)
                frame, face = engine.compose_frame(
                    avatar, i, self._sources_i420[index], generated.get(i)
                )
                if scores is not None:  # before the write: sums precede the segment
                    scores.add(i, face)
                elif engine.scorer is not None and i < MAX_SYNC_FRAMES:
                    self.sync_faces.append(face)
                self._writer.write(frame)
        self._done = end
        return end


def _segment_scores(
    engine: MuseTalkEngine,
    audio_16k: np.ndarray,
    fps: float,
    segments: SegmentPlan | None,
    total: int,
) -> SegmentScores | None:
    """A resumable render is scored segment by segment, so a resumed one scores the whole clip."""
    if segments is None or engine.scorer is None:
        return None
    from runtime.engine.sync.segmented import segment_scores

    return segment_scores(
        engine.scorer, audio_16k, fps, segments, total_frames=total, max_frames=MAX_SYNC_FRAMES
    )


def _output_plan(
    engine: MuseTalkEngine,
    request: SpeakRequest,
    scratch: ExitStack,
    total: int,
    scores: SegmentScores | None,
) -> SegmentPlan | None:
    """The segments the output is written as: the caller's (reporting their scores), speak's
    own split of a long clip for parallel encoders (in a scratch directory), or None."""
    segments = request.segments
    if segments is None and total > SPLIT_MIN_FRAMES and engine.segment_encoders > 1:
        # Split for parallel encoders only: no resume, so batches need not stop at segment
        # boundaries (they follow `segments`, None here) and the segments need no preview audio.
        directory = scratch.enter_context(
            tempfile.TemporaryDirectory(prefix=".segments-", dir=request.out_path.parent)
        )
        return SegmentPlan(
            directory=Path(directory),
            frames_per_segment=SPLIT_SEGMENT_FRAMES,
            encoders=engine.segment_encoders,
            taper=SPLIT_TAPER,
        )
    if segments is not None and scores is not None:
        return replace(segments, on_segment=scores.reporting(segments.on_segment))
    return segments


def _writer(
    engine: MuseTalkEngine,
    avatar: PreparedAvatar,
    request: SpeakRequest,
    plan: SegmentPlan | None,
    total: int,
) -> VideoWriter | SegmentedVideoWriter:
    height, width = avatar.frames.shape[1:3]
    encoding = engine.video_encoding  # the one `output_encoding` reports
    stream = {
        "width": width,
        "height": height,
        "fps": avatar.fps,
        "audio_path": request.audio,
        "codec": encoding.codec,
        "preset": encoding.preset,
    }
    if plan is None:
        return VideoWriter(request.out_path, **stream)
    return SegmentedVideoWriter(
        plan,
        out_path=request.out_path,
        total_frames=total,
        preview_audio=request.segments is not None,
        **stream,
    )


def _sync_score(
    engine: MuseTalkEngine,
    pipeline: SpeakPipeline,
    scores: SegmentScores | None,
    audio_16k: np.ndarray,
    fps: float,
    timings: dict[str, float],
) -> tuple[float | None, int | None]:
    """(confidence, offset in frames) of the written clip; (None, None) where it has none."""
    if scores is not None:
        with timed(timings, "sync"):
            whole = scores.score()
        return (None, None) if whole is None else (whole.confidence, whole.offset_frames)
    faces = pipeline.sync_faces
    if engine.scorer is None or len(faces) < SYNC_WINDOW_FRAMES:
        return None, None
    with timed(timings, "sync"):
        try:
            score = engine.scorer.score(np.stack(faces), audio_16k, fps)
            return float(score.confidence), score.offset_frames
        except (ValueError, RuntimeError) as error:
            # The mp4 is complete; a missing quality score must not fail the job.
            log.warning("sync scoring failed, no score for this render: %s", error)
            return None, None
