"""What the worker may rely on from an engine, without importing torch.

The real MuseTalk engine and the small test engine both satisfy `LipSyncEngine`. Errors carry a
`Failure`, the engine's own reason; the worker maps it to the job's error code
(the worker's `engine_options`) without knowing the model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from runtime.engine.options import AvatarOptions, RenderOptions

if TYPE_CHECKING:  # decoding needs PyAV; the contract itself does not
    from runtime.engine.untrusted import DecodeLimits


# official: every file matches the release's checksums (`official_weights`); random:
# `make-weights` output; custom: any other real weights.
WeightsKind = Literal["official", "custom", "random"]
ProgressFn = Callable[[int, int], None]  # (frames_done, frames_total)
T = TypeVar("T")


class Failure(StrEnum):
    """Why the engine could not prepare or render: its own reasons, free of the job schema."""

    INVALID_MEDIA = "INVALID_MEDIA"  # corrupt or not decodable
    NO_FACE = "NO_FACE"
    NO_SPEECH = "NO_SPEECH"  # no audio stream, or audio shorter than one frame
    MEDIA_TOO_LARGE = "MEDIA_TOO_LARGE"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"


class EngineError(Exception):
    """A failure of one preparation or render, with the reason a caller can act on."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message


class MediaError(EngineError):
    """The input itself is unusable (corrupt, no face, too long): retrying cannot help."""


class OutOfMemory(EngineError):
    """Even the smallest allowed batch did not fit; the job should go back with `batch_size`."""

    def __init__(self, batch_size: int) -> None:
        super().__init__(Failure.OUT_OF_MEMORY, f"out of GPU memory at batch size {batch_size}")
        self.batch_size = batch_size


class PreparedAvatarFormatError(ValueError):
    """Cached avatar bytes this engine cannot use (other format or model version, truncated).

    Treat it as a cache miss: prepare the avatar again and overwrite the cached object.
    """


class Interrupted(Exception):
    """`should_stop` turned true during a preparation or a render; nothing was written."""


@dataclass(frozen=True)
class SyncSums:
    """The sync scorer's similarity sums, one per audio offset, over the SyncNet windows of some
    frames (`windows` of them). Sums of separate segments add up, so a render resumed at a
    segment scores the whole clip from the earlier segments' sums plus its own."""

    similarity: tuple[float, ...]
    windows: int

    def plus(self, other: SyncSums | None) -> SyncSums:
        if other is None:
            return self
        if len(other.similarity) != len(self.similarity):
            raise ValueError("sync sums over different offset ranges do not add up")
        return SyncSums(
            tuple(a + b for a, b in zip(self.similarity, other.similarity, strict=True)),
            self.windows + other.windows,
        )


@dataclass(frozen=True)
class Segment:
    """One finished segment of a segmented render: frames [first_frame, first_frame + frames)
    as an MPEG-TS file (H.264 starting with an IDR frame, plus its stretch of the audio for
    previews) that plays on its own. `sync_sums`: its frames' sync-score sums (None when the
    engine scores none of them), to keep with the segment for a resumed render's score."""

    index: int
    first_frame: int
    frames: int
    path: Path
    fps: float
    sync_sums: SyncSums | None = None


SegmentFn = Callable[[Segment], None]
SEGMENT_FRAMES = 125  # 5 s at 25 fps: a resume loses at most this much work
# A tapered plan halves its last segment until a piece is at most twice this many frames.
TAPER_MIN_FRAMES = 8
# Segment encoders at once by default (here, not in `segments`: the worker's settings read it
# without PyAV). With one, the producer waits at every segment boundary while the last segment
# flushes: the worker's path on an H100 went 280 -> 369 frames/s from one to two (veryfast);
# three were no faster (344: 24 x264 threads on 16 cores). One more encoder per this many cores
# (a 4-core host gets one: parallel encoders there only contend for the cores), up to the maximum.
CORES_PER_EXTRA_ENCODER = 8
MAX_DEFAULT_ENCODERS = 2


def default_segment_encoders(cpus: int | None = None) -> int:
    """How many segment encoders to run at once on a host of `cpus` cores (default: this one).

    Only how many run at once depends on the host: each encoder's thread count is fixed
    (`segments.ENCODER_THREADS`), so the bytes of a segment do not.
    """
    cores = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, min(MAX_DEFAULT_ENCODERS, 1 + cores // CORES_PER_EXTRA_ENCODER))


@dataclass(frozen=True, kw_only=True)
class SegmentPlan:
    """Render in fixed-size segments under `directory` (named by `segment_file_name`).

    A render starting at `start_frame` (a multiple of `frames_per_segment`) expects the earlier
    segments in `directory` already and renders only the rest: a segment depends only on its
    frame range, so the joined result equals an uninterrupted render. `on_segment` is called
    once per newly finished segment, in index order, on a thread of the writer; `encoders`
    segments may be encoding at once.

    `taper` (for `speak`'s own split, which is never resumed) cuts the clip's last segment into
    pieces of halving length: what an encoder still holds when the last frame arrives is then
    a short piece's backlog, not a whole segment's, and that backlog is the render's tail.
    """

    directory: Path
    frames_per_segment: int = SEGMENT_FRAMES
    start_frame: int = 0
    on_segment: SegmentFn | None = None
    encoders: int = 1
    # The `sync_sums` of the segments before `start_frame` added in index order (kept from the
    # earlier attempt), so the render's sync score covers the whole clip.
    sync_sums_before: SyncSums | None = None
    taper: bool = False

    def __post_init__(self) -> None:
        if self.frames_per_segment < 1 or self.encoders < 1:
            raise ValueError("frames_per_segment and encoders must be at least 1")
        if self.start_frame < 0 or self.start_frame % self.frames_per_segment:
            raise ValueError("start_frame must be a non-negative multiple of frames_per_segment")
        if self.taper and self.start_frame:
            raise ValueError("a tapered plan is not resumable: start_frame must be 0")

    def lengths(self, total_frames: int) -> list[int]:
        """Frames of each segment of a `total_frames` render, in order."""
        size = self.frames_per_segment
        whole, rest = divmod(total_frames, size)
        if not self.taper:
            return [size] * whole + ([rest] if rest else [])
        if whole:  # the last whole segment and the remainder taper together
            whole, rest = whole - 1, rest + size
        tail = []
        while rest > 2 * TAPER_MIN_FRAMES:
            tail.append(rest - rest // 2)
            rest //= 2
        return [size] * whole + tail + ([rest] if rest else [])


def segment_file_name(index: int) -> str:
    """`00042.ts`: zero-padded so names sort in play order."""
    return f"{index:05d}.ts"


def segment_count(frames: int, frames_per_segment: int) -> int:
    return -(-frames // frames_per_segment)


class PreparedAvatarLike(Protocol):
    """A prepared avatar: serializable for the avatar cache, sized for the in-memory LRU."""

    @property
    def nbytes(self) -> int: ...

    def to_bytes(self) -> bytes: ...


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """Result of one `speak` call; the mp4 is already at the output path."""

    frames: int
    fps: float
    duration_s: float
    weights: WeightsKind
    batch_size: int
    frames_skipped: int = 0  # silent frames that reused the avatar's own frames
    sync_confidence: float | None = None
    sync_offset_frames: int | None = None
    low_sync: bool | None = None  # sync_confidence below RenderOptions.sync_threshold
    timings_ms: dict[str, float] = field(default_factory=dict)  # e.g. audio, unet, decode, encode
    resumed_from_frame: int = 0  # a segmented render that reused the segments before this frame


class LipSyncEngine(Protocol):
    weights: WeightsKind
    model_version: str

    @property
    def output_encoding(self) -> str:
        """The video encoding of `speak`'s segments: a later attempt resumes only under it."""
        ...

    def prepare(
        self,
        avatar_media: Path,
        options: AvatarOptions,
        *,
        limits: DecodeLimits | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> PreparedAvatarLike: ...

    def load_prepared(self, data: bytes) -> PreparedAvatarLike: ...

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
    ) -> Rendered: ...


def halve_on_oom(
    run_step: Callable[[int], T],
    *,
    batch_size: int,
    min_batch_size: int,
    is_oom: Callable[[BaseException], bool],
    free_memory: Callable[[], None] = lambda: None,
    on_halving: Callable[[int], None] | None = None,
) -> tuple[T, int]:
    """Run `run_step(batch_size)`, halving the batch after each out-of-memory error.

    Returns the step's result and the batch size that worked (callers keep using it). Raises
    `OutOfMemory` once halving would go below `min_batch_size`.
    """
    size = batch_size
    while True:
        try:
            return run_step(size), size
        except Exception as error:
            if not is_oom(error):
                raise
            free_memory()
            if size // 2 < min_batch_size:
                raise OutOfMemory(size) from error
            size //= 2
            if on_halving is not None:
                on_halving(size)
