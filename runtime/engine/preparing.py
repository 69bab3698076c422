"""Avatar preparation in chunks of frames (spec §3-§6).

Each chunk of frames goes through three stages, in chunk order: locate (S3FD + DWPose -> face
boxes), encode (256x256 crops -> VAE latents) and parse (BiSeNet -> blend masks). Three ways
to run them, the same results:
- in order on the calling thread, decoding between chunks (the CPU default, one chunk);
- in order, the decoding a chunk ahead on its own thread (`decode_ahead`, the CUDA default):
  the GPU work of the stages queues on one stream with nothing beside it, and only the
  decoding (host work) overlaps it;
- overlapped (`overlap`): each stage on its own thread and, on CUDA, its own stream. That paid
  while host work (mmpose's warps, crops, mask morphology) bound preparation; once it moved
  to the GPU (`Stages.upload`) the stages' kernels slowed each other down there to about half
  the serial speed.
The per-stage times are reported; overlapped, they are busy times that overlap.

With `Stages.upload` (the engine's device ops, the CUDA default) each chunk goes to the device
once, in the locate stage, and locate and parse work on that tensor: the models' pre- and
post-processing is then batched tensor work there, and the GPU rather than the host bounds
preparation.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from runtime.engine.engine_contract import Interrupted
from runtime.engine.face_sync_protocols import BoxLike
from runtime.engine.hostpool import host_map

T = TypeVar("T")

# Frames of a chunk: the host arrays, or (with `Stages.upload`) one uint8 [n, H, W, 3] tensor
# on the device.
Frames = Sequence[np.ndarray] | torch.Tensor
LocateFn = Callable[[Frames], Sequence[BoxLike | None]]
CropFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
EncodeFn = Callable[[np.ndarray], np.ndarray]
# (frames with a face, their boxes, the boxes as int rows) -> the mask under each box
MaskFn = Callable[[Frames, Sequence[BoxLike], np.ndarray], list[np.ndarray]]
UploadFn = Callable[[Sequence[np.ndarray]], torch.Tensor]


@dataclass(frozen=True)
class Stages:
    """What to do per chunk; the engine binds its models and the avatar's options."""

    locate: LocateFn
    crop: CropFn  # (frame, box row) -> 256x256 crop
    encode: EncodeFn  # crops [n, 256, 256, 3] -> latents [n, 8, 32, 32] float32
    masks: MaskFn
    # When set, each chunk goes to the device once (in the locate stage) and locate and masks
    # get that tensor, so their pre- and post-processing runs there, batched.
    upload: UploadFn | None = None


@dataclass
class PreparedFrames:
    """Everything a PreparedAvatar holds that depends on the frames."""

    frames: np.ndarray  # [N, H, W, 3] BGR uint8
    boxes: np.ndarray  # [N, 4] int32, zero where no face
    has_face: np.ndarray  # [N] bool
    latents: np.ndarray  # [N, 8, 32, 32] float32, zero where no face
    masks: list[np.ndarray]  # per frame; empty where no face
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Clock:
    """Per-stage wall time, added up across threads."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - start) * 1000


@dataclass
class _Chunk:
    start: int
    frames: list[np.ndarray]
    boxes: Sequence[BoxLike | None] = ()
    rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int32))
    faces: list[int] = field(default_factory=list)  # indices into `frames` with a face
    pixels: torch.Tensor | None = None  # the frames on the device (`Stages.upload`)


def prepare_frames(
    frames: Iterable[np.ndarray],
    stages: Stages,
    *,
    chunk_frames: int,
    overlap: bool,
    device: torch.device,
    decode_ahead: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> PreparedFrames:
    """Run `stages` over `frames` chunk by chunk; overlapped on threads or one after another.

    `decode_ahead` (without `overlap`): the frames are decoded on a thread of their own, a
    chunk or two ahead, while the stages run one after another on the calling thread. On a GPU
    the models then queue their kernels on one stream with nothing beside them (stages on three
    streams slow each other down there), and only the decoding, host work, overlaps them.
    `should_stop` is polled before each chunk: `Interrupted` when it turns true (cancel,
    deadline, lease lost), so a long preparation ends within a chunk.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, not {chunk_frames}")
    clock = _Clock()
    with ExitStack() as stack:
        run: _Overlapped | _InOrder = (
            _Overlapped(stack, clock, device) if overlap else _InOrder(clock)
        )
        decoder = _DecodeAhead(stack, clock) if decode_ahead and not overlap else _Decode(clock)
        start = 0
        for chunk_frames_read in decoder.chunks(iter(frames), chunk_frames):
            if should_stop is not None and should_stop():
                raise Interrupted("stopped while preparing the avatar")
            run.chunk(_Chunk(start, chunk_frames_read), stages)
            start += len(chunk_frames_read)
        stacked = decoder.stacked()
        chunks = run.finish()
    return _assemble(stacked, chunks, clock.ms)


def _take(source: Iterator[np.ndarray], n: int) -> list[np.ndarray]:
    taken: list[np.ndarray] = []
    for frame in source:
        taken.append(frame)
        if len(taken) == n:
            break
    return taken


class _Decode:
    """Chunks of frames decoded on the calling thread, between the chunks' stages."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock
        self.decoded: list[np.ndarray] = []

    def chunks(self, source: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
        while True:
            with self.clock("decode"):
                chunk = _take(source, size)
            if not chunk:
                return
            self.decoded.extend(chunk)
            yield chunk

    def stacked(self) -> np.ndarray:
        """Every frame as one array; overlapped stages may still be on the last chunks."""
        with self.clock("decode"):
            stacked = np.stack(self.decoded)
        self.decoded = []
        return stacked


class _DecodeAhead:
    """Chunks decoded on a thread of their own, at most `_AHEAD` chunks ahead of the stages; the
    thread also stacks the frames into one array while the stages finish the last chunk. Time
    the caller waits for a chunk is `decode_wait`; the thread's own time is `decode`."""

    _AHEAD = 2

    def __init__(self, stack: ExitStack, clock: _Clock) -> None:
        self.clock = clock
        self._queue: queue.Queue[list[np.ndarray] | BaseException | None] = queue.Queue(self._AHEAD)
        self._stop = threading.Event()
        self._stacked: Future[np.ndarray] = Future()
        self._thread: threading.Thread | None = None
        stack.callback(self._close)

    def chunks(self, source: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
        self._thread = threading.Thread(
            target=self._decode, args=(source, size), name="prepare-decode", daemon=True
        )
        self._thread.start()
        while True:
            with self.clock("decode_wait"):
                item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                return
            yield item

    def stacked(self) -> np.ndarray:
        with self.clock("decode_wait"):
            return self._stacked.result()

    def _decode(self, source: Iterator[np.ndarray], size: int) -> None:
        decoded: list[np.ndarray] = []
        try:
            while not self._stop.is_set():
                with self.clock("decode"):
                    chunk = _take(source, size)
                if not chunk:
                    break
                decoded.extend(chunk)
                self._put(chunk)
            if self._stop.is_set():  # the caller left early (a stage failed)
                return
            self._put(None)  # no more chunks; the stages run on while the frames are stacked
            with self.clock("decode"):
                self._stacked.set_result(np.stack(decoded))
        except BaseException as error:  # the caller's to raise, on its thread
            self._put(error)
            if not self._stacked.done():
                self._stacked.set_exception(error)

    def _put(self, item: list[np.ndarray] | BaseException | None) -> None:
        """Queue `item` unless the caller has left (then nobody would take it)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _locate(chunk: _Chunk, stages: Stages) -> _Chunk:
    if stages.upload is not None:
        chunk.pixels = stages.upload(chunk.frames)
    chunk.boxes = list(stages.locate(chunk.frames if chunk.pixels is None else chunk.pixels))
    chunk.faces = [i for i, box in enumerate(chunk.boxes) if box is not None]
    chunk.rows = np.zeros((len(chunk.frames), 4), np.int32)
    for i in chunk.faces:
        box = chunk.boxes[i]
        assert box is not None  # noqa: S101  # nosec B101 (faces: located only)
        chunk.rows[i] = (box.x1, box.y1, box.x2, box.y2)
    return chunk


def _crop(chunk: _Chunk, stages: Stages) -> np.ndarray:
    crops = host_map(lambda i: stages.crop(chunk.frames[i], chunk.rows[i]), chunk.faces)
    return np.stack(crops) if crops else np.zeros((0, 256, 256, 3), np.uint8)


def _encode(crops: np.ndarray, stages: Stages) -> np.ndarray:
    return stages.encode(crops) if len(crops) else np.zeros((0, 8, 32, 32), np.float32)


def _masks(chunk: _Chunk, stages: Stages) -> list[np.ndarray]:
    if not chunk.faces:
        chunk.pixels = None  # nothing to parse: free the device copy now
        return []
    boxes = [chunk.boxes[i] for i in chunk.faces]
    frames: Frames
    if chunk.pixels is None:
        frames = [chunk.frames[i] for i in chunk.faces]
    else:
        frames = chunk.pixels
        if frames.is_cuda:  # uploaded on the locate stage's stream, read on this one
            frames.record_stream(torch.cuda.current_stream(frames.device))
        if len(chunk.faces) < len(chunk.frames):
            frames = frames[torch.tensor(chunk.faces, device=frames.device)]
    masks = stages.masks(
        frames,
        boxes,  # type: ignore[arg-type]  # faces: not None
        chunk.rows[chunk.faces],
    )
    chunk.pixels = None  # the device copy is done with: free it before the chunk is assembled
    return masks


@dataclass
class _Done:
    chunk: _Chunk
    latents: np.ndarray
    masks: list[np.ndarray]


class _InOrder:
    """Each chunk through every stage on the calling thread before the next is decoded."""

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock
        self.done: list[_Done] = []

    def chunk(self, chunk: _Chunk, stages: Stages) -> None:
        with self.clock("locate"):
            _locate(chunk, stages)
        with self.clock("crop"):
            crops = _crop(chunk, stages)
        with self.clock("vae_encode"):
            latents = _encode(crops, stages)
        with self.clock("parse"):
            masks = _masks(chunk, stages)
        self.done.append(_Done(chunk, latents, masks))

    def finish(self) -> list[_Done]:
        return self.done


class _Overlapped:
    """One single-thread executor per stage, so each stage keeps chunk order; a later stage's
    task waits on the earlier stage's future for its chunk. On CUDA each stage thread enqueues
    on its own stream, so one stage's kernels need not wait behind another's host work."""

    def __init__(self, stack: ExitStack, clock: _Clock, device: torch.device) -> None:
        self.clock = clock
        self.pools = {
            name: stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix=f"prepare-{name}"))
            for name in ("locate", "encode", "parse")
        }
        # Cancel what has not started if the caller leaves early (an error): the executors'
        # exits then wait only for the tasks already running.
        stack.callback(self._cancel)
        self.streams: dict[str, Any] = {
            name: torch.cuda.Stream(device) if device.type == "cuda" else None
            for name in self.pools
        }
        self.pending: list[tuple[Future[_Chunk], Future[np.ndarray], Future[list[np.ndarray]]]]
        self.pending = []

    def _cancel(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, stage: str, fn: Callable[[], T]) -> Future[T]:
        stream = self.streams[stage]

        def task() -> T:
            with torch.cuda.stream(stream) if stream is not None else nullcontext():
                return fn()

        return self.pools[stage].submit(task)

    def chunk(self, chunk: _Chunk, stages: Stages) -> None:
        self._raise_early_failure()

        def locate() -> _Chunk:
            with self.clock("locate"):
                return _locate(chunk, stages)

        def encode() -> np.ndarray:
            located_chunk = located.result()
            with self.clock("crop"):
                crops = _crop(located_chunk, stages)
            with self.clock("vae_encode"):
                return _encode(crops, stages)

        def masks() -> list[np.ndarray]:
            located_chunk = located.result()
            with self.clock("parse"):
                return _masks(located_chunk, stages)

        located = self._submit("locate", locate)
        self.pending.append((located, self._submit("encode", encode), self._submit("parse", masks)))

    def _raise_early_failure(self) -> None:
        """A stage that failed stops the decoding of the rest (the error is the caller's)."""
        for futures in self.pending[-2:]:
            for future in futures:
                if future.done() and future.exception() is not None:
                    future.result()

    def finish(self) -> list[_Done]:
        return [
            _Done(located.result(), encoded.result(), masked.result())
            for located, encoded, masked in self.pending
        ]


def _assemble(frames: np.ndarray, chunks: list[_Done], timings: dict[str, float]) -> PreparedFrames:
    count = len(frames)
    boxes = np.zeros((count, 4), np.int32)
    has_face = np.zeros(count, bool)
    latents = np.zeros((count, 8, 32, 32), np.float32)
    masks = [np.zeros((0, 0), np.uint8)] * count
    for done in chunks:
        chunk = done.chunk
        at = [chunk.start + i for i in chunk.faces]
        boxes[chunk.start : chunk.start + len(chunk.frames)] = chunk.rows
        has_face[at] = True
        latents[at] = done.latents
        for i, mask in zip(at, done.masks, strict=True):
            masks[i] = mask
    return PreparedFrames(frames, boxes, has_face, latents, masks, dict(timings))
