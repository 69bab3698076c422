"""Segmented output: a render written as independently decodable MPEG-TS segments.

Why: a long render interrupted by a spot reclaim or a crash should resume where it stopped, and
a caller should be able to watch it while it renders. Each segment gets its own encoder, so it
starts with an IDR frame and depends on nothing before it; with the same frames in, x264 writes
the same bytes out, so a segment rendered after a resume is the segment an uninterrupted render
would have written. The final mp4 is a remux of the segments (no re-encode) plus the audio.

Several segments may be encoding at once (`SegmentPlan.encoders`): a finished segment's frames
wait in its writer's queues (a segment of up to ~128 frames fits in them whole) while the next
segment's encoder already takes new ones, so N encoders run side by side and the producer waits
only when all N are busy. Finished segments are reported in index order on one reporter thread,
so a slow consumer (an upload) never stalls encoding, and joined into the final mp4 as they
finish on another, so the remux is not all left for the end.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import accumulate
from pathlib import Path

import numpy as np

from runtime.engine.encoder_presets import DEFAULT_PRESET
from runtime.engine.engine_contract import Segment, SegmentPlan, segment_file_name
from runtime.engine.media import (
    AudioClip,
    EncoderSession,
    SegmentJoiner,
    VideoWriter,
    decode_audio_mono,
    encode_audio,
)
from runtime.engine.yuv import I420Frame

log = logging.getLogger(__name__)

# Segment timestamps start this many frames after the frame index. x264's B-frames put the
# first decode time a few frames before the first presentation time; were it below zero, the
# muxer would shift that one segment's times and the segments would no longer line up.
PTS_LEAD_FRAMES = 16
# Each segment also carries its stretch of the audio (mono AAC at this rate), so the live preview
# has sound; the final mp4 takes only the segments' video and the original audio as AAC.
PREVIEW_AUDIO_RATE = 24_000
# Same frames in must give the same bytes out, on any worker. x264's bitstream depends on its
# thread count, which it would otherwise pick from the host's cores: fixed. Its macroblock-tree
# rate control is not repeatable at some sizes (176x144 and 176x304 here: about one segment in
# 50 came out different; likely uninitialised memory where the half-resolution lookahead frame
# is not a whole number of macroblocks, as at 1080p); off for segments, so repeatable, at the
# cost of a few percent more bits at the same CRF. 8 threads: on the H100's 16-core host one
# segment encoder did 491 frames/s (6 threads: 417) and two at once 650 (634), so 2 x 8 fills
# the host; a smaller host runs fewer at once.
ENCODER_THREADS = 8
X264_OPTIONS = {"x264-params": "mbtree=0"}


class SegmentedVideoWriter(EncoderSession):
    """`VideoWriter`'s interface (write, close, abort) over a sequence of segments.

    Frames are written from `plan.start_frame` on; the segments before it must already be in
    `plan.directory`. `close()` finishes the last segment, waits for every report and joins all
    segments with the audio into `out_path`. `abort()` drops only the unfinished segment: the
    finished ones are still reported, so the work done before an interruption is kept.
    """

    def __init__(
        self,
        plan: SegmentPlan,
        *,
        out_path: Path,
        total_frames: int,
        width: int,
        height: int,
        fps: float,
        audio_path: Path,
        codec: str = "libx264",
        preset: str = DEFAULT_PRESET,
        preview_audio: bool = True,
    ) -> None:
        if plan.start_frame >= total_frames + plan.frames_per_segment:
            raise ValueError(f"start_frame {plan.start_frame} is past the last segment")
        self.plan = plan
        self._lengths = plan.lengths(total_frames)
        self._firsts = [0, *accumulate(self._lengths)]  # and the end
        self.out_path = out_path
        self.total_frames = total_frames
        self.remux_ms = 0.0
        self._size = (width, height)
        self._fps = fps
        self._audio_path = audio_path
        self._codec = codec
        self._preset = preset
        # The audio work runs beside the first frames, off the producer's path: for the live
        # preview only, each segment's own stretch of audio (a render nobody watches leaves it
        # out), then the mp4's AAC track (encoded once, copied by the remux). In that order:
        # the first segment cannot open without its stretch, while the track is needed only
        # when that segment is joined, and encoding it takes 0.1-0.15 s for 30 s of speech
        # (first in line, it held up every frame of the render for as long).
        self._audio = ThreadPoolExecutor(1, thread_name_prefix="segment-audio")
        self._preview_audio: Future[np.ndarray | None] | None = (
            self._audio.submit(decode_audio_mono, audio_path, PREVIEW_AUDIO_RATE)
            if preview_audio
            else None
        )
        self._encoded_audio_path = out_path.with_name(f".{out_path.name}.audio.m4a")
        self._encoded_audio = self._audio.submit(encode_audio, audio_path, self._encoded_audio_path)
        self._next_frame = min(plan.start_frame, total_frames)  # past the end: all done
        self._next_segment = self._firsts.index(self._next_frame)  # start_frame: a boundary
        self._current: tuple[Segment, VideoWriter] | None = None
        self._closers = ThreadPoolExecutor(plan.encoders, thread_name_prefix="segment-close")
        self._reporter = ThreadPoolExecutor(1, thread_name_prefix="segment-report")
        self._closing: deque[Future[None]] = deque()  # encoders flushing, oldest first
        self._reports: list[Future[None]] = []
        # Each finished segment is joined into the mp4 at once, in order, on its own thread:
        # what is left for `close()` is the last segment and the index, not the whole remux.
        self._joiner = SegmentJoiner(out_path, audio_path, encoded_audio=self._audio_for_mp4)
        self._joining = ThreadPoolExecutor(1, thread_name_prefix="segment-join")
        self._joins: list[Future[None]] = []
        self._joined = 0  # segments [0, _joined) are in the mp4
        self._finished = False
        self._report_failed = False
        plan.directory.mkdir(parents=True, exist_ok=True)

    @property
    def segment_total(self) -> int:
        return len(self._lengths)

    def segment(self, index: int) -> Segment:
        path = self.plan.directory / segment_file_name(index)
        return Segment(index, self._firsts[index], self._lengths[index], path, self._fps)

    def write(self, frame: np.ndarray | I420Frame) -> None:
        self._raise_failed()
        if self._next_frame >= self.total_frames:
            raise ValueError("more frames than the render has")
        if self._current is None:
            self._current = self._open(self._next_segment)
            self._next_segment += 1
        segment, writer = self._current
        writer.write(frame)
        self._next_frame += 1
        if self._next_frame == segment.first_frame + segment.frames:
            self._finish_current()

    def close(self) -> None:
        """Wait for every segment and its report, then remux them all into `out_path`."""
        if self._finished:
            return
        self._finished = True
        try:
            try:
                if self._next_frame != self.total_frames:
                    raise ValueError(f"closed at frame {self._next_frame} of {self.total_frames}")
                self._drain()
            finally:
                self._shutdown()
            paths = [self.segment(i).path for i in range(self.segment_total)]
            missing = [path.name for path in paths if not path.is_file()]
            if missing:
                raise FileNotFoundError(f"segments missing: {', '.join(missing)}")
            started = time.perf_counter()
            for join in self._joins:
                join.result()
            self._join_through(self.segment_total - 1)
            written = self._joiner.close()
        except BaseException:
            self._joiner.abort()
            raise
        finally:
            self._encoded_audio_path.unlink(missing_ok=True)
        self.remux_ms = (time.perf_counter() - started) * 1000
        if written != self.total_frames:
            raise ValueError(f"the segments hold {written} frames, not {self.total_frames}")

    def abort(self) -> None:
        """Drop the unfinished segment; finish and report the complete ones; no final file."""
        if self._finished:
            self.out_path.unlink(missing_ok=True)
            return
        self._finished = True
        if self._current is not None:
            self._current[1].abort()
            self._current = None
        try:
            self._drain()
        except Exception:  # the caller's own error is the one to raise
            log.warning("a finished segment could not be reported while aborting", exc_info=True)
        finally:
            self._shutdown()
        self._joiner.abort()
        self._encoded_audio_path.unlink(missing_ok=True)
        self.out_path.unlink(missing_ok=True)

    def _open(self, index: int) -> tuple[Segment, VideoWriter]:
        # At most `encoders` encoders at once: wait for the oldest flush before opening another.
        while len(self._closing) >= self.plan.encoders:
            self._closing.popleft().result()
        segment = self.segment(index)
        width, height = self._size
        writer = VideoWriter(
            segment.path.with_suffix(".part.ts"),  # renamed when complete: no half segment
            width=width,
            height=height,
            fps=self._fps,
            audio_path=None,
            codec=self._codec,
            preset=self._preset,
            first_pts=segment.first_frame + PTS_LEAD_FRAMES,
            audio_clip=self._audio_clip(segment),
            threads=ENCODER_THREADS,
            x264_options=X264_OPTIONS,
        )
        return segment, writer

    def _audio_clip(self, segment: Segment) -> AudioClip | None:
        """The audio under the segment's frames, timed like them."""
        samples = None if self._preview_audio is None else self._preview_audio.result()
        if samples is None:
            return None
        per_frame = PREVIEW_AUDIO_RATE / self._fps
        start = round(segment.first_frame * per_frame)
        end = round((segment.first_frame + segment.frames) * per_frame)
        return AudioClip(
            samples=samples[start:end],
            rate=PREVIEW_AUDIO_RATE,
            first_sample=start + round(PTS_LEAD_FRAMES * per_frame),
        )

    def _finish_current(self) -> None:
        assert self._current is not None  # noqa: S101  # nosec B101 (called after a write)
        segment, writer = self._current
        self._current = None

        def finish() -> None:
            writer.close()
            if writer.frames_written != segment.frames:
                raise ValueError(f"segment {segment.index}: {writer.frames_written} frames")
            writer.out_path.replace(segment.path)

        closing = self._closers.submit(finish)
        self._closing.append(closing)
        self._reports.append(self._reporter.submit(self._report, segment, closing))
        self._joins.append(self._joining.submit(self._join_when_closed, segment, closing))

    def _join_when_closed(self, segment: Segment, closing: Future[None]) -> None:
        closing.result()
        self._join_through(segment.index)

    def _join_through(self, index: int) -> None:
        """Join segments up to `index` into the mp4, from the first one not joined yet (a
        resumed render's earlier segments too)."""
        for earlier in range(self._joined, index + 1):
            self._joiner.add(self.segment(earlier).path)
            self._joined = earlier + 1

    def _audio_for_mp4(self) -> Path | None:
        """The mp4's AAC track, once encoded (None: the audio has no track to encode)."""
        return self._encoded_audio_path if self._encoded_audio.result() else None

    def _report(self, segment: Segment, closing: Future[None]) -> None:
        """In index order; after a failure, later segments are not reported (the consumer can
        then trust that reported segments form an unbroken run from the first)."""
        if self._report_failed:
            raise RuntimeError(f"segment {segment.index} not reported: an earlier one failed")
        try:
            closing.result()
            if self.plan.on_segment is not None:
                self.plan.on_segment(segment)
        except BaseException:
            self._report_failed = True
            raise

    def _raise_failed(self) -> None:
        """Surface an encoder's or a report's failure on the producer's thread."""
        for future in (*self._closing, *self._reports, *self._joins):
            error = future.exception() if future.done() else None
            if error is not None:
                raise error

    def _drain(self) -> None:
        for future in self._reports:
            future.result()

    def _shutdown(self) -> None:
        self._closers.shutdown(wait=True)
        self._reporter.shutdown(wait=True)
        self._joining.shutdown(wait=True)
        self._audio.shutdown(wait=True)
