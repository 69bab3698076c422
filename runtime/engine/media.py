"""Media out with PyAV only (no ffmpeg binary): the mp4 writer and its audio (avatars are
decoded in `avatar_reader`).

`VideoWriter` encodes H.264 yuv420p on a background thread while the engine keeps generating,
then muxes the original audio re-encoded to AAC, as the official second ffmpeg pass does;
`+faststart` puts the index first so players start at once. The same writer produces the
MPEG-TS segments of a segmented render, and `SegmentJoiner` joins their video into the final mp4
without re-encoding.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Self, cast

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from runtime.engine.encoder_presets import DEFAULT_PRESET
from runtime.engine.yuv import I420Frame, to_i420

log = logging.getLogger(__name__)

_END = object()
AAC_RATES = frozenset(
    {7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
)


def even_size(width: int, height: int) -> tuple[int, int]:
    """yuv420p needs even dimensions; an odd last row/column is dropped."""
    return width - width % 2, height - height % 2


@dataclass(frozen=True)
class AudioClip:
    """A stretch of mono 16-bit audio for one segment (the live preview's sound), starting at
    `first_sample` on the segment timestamps' clock (1/rate)."""

    samples: np.ndarray  # int16 [n]
    rate: int
    first_sample: int


def decode_audio_mono(path: Path, rate: int) -> np.ndarray | None:
    """The whole audio track as mono int16 at `rate` (None: no audio track)."""
    with av.open(str(path)) as source:
        if not source.streams.audio:
            return None
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        chunks = [
            converted.to_ndarray().reshape(-1)
            for frame in source.decode(source.streams.audio[0])
            for converted in resampler.resample(frame)
        ]
        chunks += [converted.to_ndarray().reshape(-1) for converted in resampler.resample(None)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def clip_packets(out: AudioStream, clip: AudioClip) -> list[av.Packet]:
    """`clip` encoded to AAC at its timestamps (AAC takes 1024-sample frames), for `out`."""
    packets: list[av.Packet] = []
    if clip.samples.size:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(clip.samples.reshape(1, -1)), format="s16", layout="mono"
        )
        frame.sample_rate = clip.rate
        frame.time_base = Fraction(1, clip.rate)
        frame.pts = clip.first_sample
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=clip.rate, frame_size=1024)
        for converted in [*resampler.resample(frame), *resampler.resample(None)]:
            packets += out.encode(converted)
    return packets + out.encode(None)


class EncoderSession:
    """A writer's context-manager protocol: leaving the block normally finishes the file
    (`close`), leaving it with an exception abandons it (`abort`)."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class VideoWriter(EncoderSession):
    """Streams BGR frames to an H.264 file on a thread; `close()` muxes the audio and finishes.

    The container follows the suffix (`.mp4`: faststart; `.ts`: MPEG-TS, e.g. a segment).
    Without `audio_path` the file is video only. Frame timestamps start at `first_pts` (in
    frames), so consecutive segments carry continuous times; `audio_clip` muxes a stretch of
    audio timed like them (a segment's preview sound). x264's output depends on its thread
    count: pass `threads` where the bytes must not depend on the host. Use as a context
    manager; leaving it with an exception abandons the file.
    """

    def __init__(
        self,
        out_path: Path,
        *,
        width: int,
        height: int,
        fps: float,
        audio_path: Path | None,
        codec: str = "libx264",
        preset: str = DEFAULT_PRESET,
        crf: int = 18,
        queue_frames: int = 64,
        thread_type: str = "FRAME",
        first_pts: int = 0,
        audio_clip: AudioClip | None = None,
        threads: int | None = None,
        x264_options: dict[str, str] | None = None,
    ) -> None:
        self.out_path = out_path
        self.audio_path = audio_path
        self.width, self.height = even_size(width, height)
        self._first_pts = first_pts
        # The audio is muxed when its encoder thread has it (below): the muxer waits for it
        # rather than write a long stretch of video first (its default gives up after 10 s).
        self._container = av.open(
            str(out_path), "w", options=_container_options(out_path) | {"max_interleave_delta": "0"}
        )
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = cast(VideoStream, self._container.add_stream(codec, rate=rate))
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"preset": preset, "crf": str(crf), **(x264_options or {})}
            # PyAV's default is SLICE (x264 sliced threads); FRAME threading keeps more cores
            # busy on long clips, at a few frames of encoder delay.
            self._stream.codec_context.thread_type = thread_type
            if threads is not None:  # else x264 picks from the host's core count
                self._stream.codec_context.thread_count = threads
        self._audio_stream = (
            None if audio_path is None else add_audio_stream(self._container, audio_path)
        )
        self._clip = audio_clip
        self._clip_stream: AudioStream | None = None
        if audio_clip is not None:
            self._clip_stream = self._container.add_stream("aac", rate=audio_clip.rate)
            self._clip_stream.layout = "mono"
        # The audio (the whole track, or a preview segment's clip) is encoded to AAC on its own
        # thread beside the first video frames and muxed as soon as it is ready (the muxer
        # interleaves): encoded first on the encoder thread, it held back every video frame
        # (~0.15 s for 30 s of speech, on hosts where the encoder sets the pace). The encoder
        # thread opens every codec before it hands the audio over (see `_encode_loop`).
        self._audio_work: ThreadPoolExecutor | None = None
        self._audio_packets: Future[list[av.Packet]] | None = None
        if self._audio_stream is not None or self._clip_stream is not None:
            self._audio_work = ThreadPoolExecutor(1, thread_name_prefix="video-writer-audio")
        # Two stages on two threads: colour conversion (OpenCV, GIL released) feeds the encoder,
        # so libx264 never waits for it (on one thread the pair ran at ~240 frames/s on an H200's
        # host, the encoder alone well above that).
        self._raw: queue.Queue[object] = queue.Queue(maxsize=queue_frames)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_frames)
        self._error: BaseException | None = None
        self.frames_written = 0
        self._closed = False
        self._converter = threading.Thread(
            target=self._convert_loop, name="video-writer-yuv", daemon=True
        )
        self._thread = threading.Thread(target=self._encode_loop, name="video-writer", daemon=True)
        self._converter.start()
        self._thread.start()

    def write(self, frame: np.ndarray | I420Frame) -> None:
        """Queue one frame, BGR or already I420 at the stream's size (blocks when the encoder
        is behind, which bounds memory)."""
        if self._error is not None:
            raise self._error
        if isinstance(frame, I420Frame) and frame.size != (self.width, self.height):
            raise ValueError(
                f"I420 frame of {frame.size}, the stream is {self.width}x{self.height}"
            )
        self._raw.put(frame)

    def close(self) -> None:
        """Flush video, write the index (idempotent). Raises what the encoder thread hit."""
        if self._closed:
            return
        self._closed = True
        self._raw.put(_END)
        self._converter.join()
        self._thread.join()
        self._stop_audio()
        try:
            if self._error is not None:
                raise self._error
        finally:
            self._container.close()

    def abort(self) -> None:
        """Stop the encoder and drop the partial file."""
        if self._closed:
            self.out_path.unlink(missing_ok=True)
            return
        self._closed = True
        while True:  # unblock a producer-side put, then signal the end
            try:
                self._raw.get_nowait()
            except queue.Empty:
                break
        self._raw.put(_END)
        self._converter.join()
        self._thread.join()
        self._stop_audio()
        self._container.close()
        self.out_path.unlink(missing_ok=True)

    def _encode_audio(self) -> list[av.Packet]:
        packets: list[av.Packet] = []
        if self._audio_stream is not None and self.audio_path is not None:
            packets += audio_packets(self._audio_stream, self.audio_path)
        if self._clip is not None and self._clip_stream is not None:
            packets += clip_packets(self._clip_stream, self._clip)
        return packets

    def _mux_audio(self, *, wait: bool) -> None:
        """Mux the encoded audio once it is ready (`wait`: wait for it); then never again."""
        pending = self._audio_packets
        if pending is None or not (wait or pending.done()):
            return
        self._audio_packets = None
        for packet in pending.result():
            self._container.mux(packet)

    def _stop_audio(self) -> None:
        if self._audio_work is not None:
            self._audio_work.shutdown(wait=True, cancel_futures=True)

    def _encode_loop(self) -> None:
        try:
            # Codecs opened (and the header written) here, off the caller's thread, before the
            # audio thread encodes with its own stream.
            self._container.start_encoding()
            if self._audio_work is not None:
                self._audio_packets = self._audio_work.submit(self._encode_audio)
            while (item := self._queue.get()) is not _END:
                assert isinstance(item, np.ndarray)  # noqa: S101  # nosec B101 (only the converter puts here)
                if self._error is not None:
                    continue  # drain so the producer never blocks on a dead encoder
                self._mux_audio(wait=False)
                frame = av.VideoFrame.from_ndarray(item, "yuv420p")
                frame.pts = self._first_pts + self.frames_written
                self._container.mux(self._stream.encode(frame))
                self.frames_written += 1
            if self._error is None:
                self._container.mux(self._stream.encode(None))
                self._mux_audio(wait=True)
        except BaseException as error:  # re-raised on the caller's thread by write()/close()
            self._error = error
            while self._queue.get() is not _END:
                pass

    def _convert_loop(self) -> None:
        """BGR frames -> I420 planes for the encoder thread (I420 frames pass through, in
        order); always forwards the end marker."""
        try:
            while (item := self._raw.get()) is not _END:
                if self._error is not None:
                    continue  # drain so the producer never blocks on a dead encoder
                if isinstance(item, I420Frame):
                    self._queue.put(item.data)
                    continue
                assert isinstance(item, np.ndarray)  # noqa: S101  # nosec B101 (only write() puts here)
                # OpenCV's BT.601 limited-range conversion round-trips exactly through the
                # decoder; swscale's default (fast, unrounded) shifts levels by up to 4.
                self._queue.put(to_i420(item[: self.height, : self.width]).data)
        except BaseException as error:  # re-raised on the caller's thread by write()/close()
            self._error = error
            while self._raw.get() is not _END:
                pass
        finally:
            self._queue.put(_END)


def _container_options(path: Path) -> dict[str, str]:
    """`+faststart` for mp4 (index first, players start at once); nothing for MPEG-TS."""
    return {"movflags": "+faststart"} if path.suffix.lower() in {".mp4", ".mov"} else {}


def add_audio_stream(container: av.container.OutputContainer, audio: Path) -> AudioStream | None:
    """An AAC stream for `audio`'s first track (None: it has none). Streams must all exist
    before the header is written, so call this before muxing anything."""
    with av.open(str(audio)) as source:
        if not source.streams.audio:
            return None
        source_context = source.streams.audio[0].codec_context
        rate = source_context.sample_rate
        # AAC takes a fixed set of rates; others are resampled to 48 kHz (`audio_packets`)
        stream = container.add_stream("aac", rate=rate if rate in AAC_RATES else 48_000)
        stream.layout = "mono" if source_context.channels == 1 else "stereo"
        return stream


def audio_packets(out: AudioStream, audio: Path) -> list[av.Packet]:
    """The original audio re-encoded to AAC for `out` (content unchanged, as the official mux)."""
    resampler = av.AudioResampler(format="fltp", layout=out.layout.name, rate=out.rate)
    packets: list[av.Packet] = []
    with av.open(str(audio)) as source:
        for frame in source.decode(source.streams.audio[0]):
            for converted in resampler.resample(frame):
                packets += out.encode(converted)
        for converted in resampler.resample(None):
            packets += out.encode(converted)
    return packets + out.encode(None)


def mux_audio(container: av.container.OutputContainer, out: AudioStream, audio: Path) -> None:
    """Re-encode the original audio to AAC into `container` (see `audio_packets`)."""
    for packet in audio_packets(out, audio):
        container.mux(packet)


def encode_audio(audio: Path, out_path: Path) -> bool:
    """`audio`'s first track re-encoded to AAC in its own file (False, nothing written: no audio
    track), for `remux_segments` to copy: encoding takes longer than the remux itself (~0.15 s
    for 30 s of speech), so a segmented render does it while the frames are still rendering."""
    with av.open(str(out_path), "w") as output:
        stream = add_audio_stream(output, audio)
        if stream is None:
            return False
        mux_audio(output, stream, audio)
    return True


def remux_segments(
    segments: list[Path], audio: Path, out_path: Path, *, encoded_audio: Path | None = None
) -> int:
    """Join the H.264 video of `segments` (in order) into one faststart mp4 with `audio` as AAC
    (see `SegmentJoiner`, which this runs in one go). Returns the number of video packets
    (= frames) written."""
    if not segments:
        raise ValueError("no segments to join")
    joiner = SegmentJoiner(out_path, audio, encoded_audio=lambda: encoded_audio)
    try:
        for path in segments:
            joiner.add(path)
    except BaseException:
        joiner.abort()
        raise
    return joiner.close()


class SegmentJoiner:
    """Segments joined into one faststart mp4 as they finish, so that little is left to do
    once the last one is written (the segmented render's tail: the remux of 30 s of segments
    at the end measured 110-146 ms on the H100 host, most of it opening and demuxing them).

    The video packets are copied as they are (no decode, no re-encode), so the mp4 holds
    exactly the frames the segments hold; times are shifted so the first frame is at zero. The
    segments' own preview audio is left out: the mp4's audio is `audio` as AAC, or the packets
    of the file `encoded_audio()` names (from `encode_audio`; asked for when the first segment
    is added, so it may still be encoding until then). The mp4 is the same, byte for byte,
    whether the segments are added as they finish or all at the end (`remux_segments`).
    """

    def __init__(
        self,
        out_path: Path,
        audio: Path,
        *,
        encoded_audio: Callable[[], Path | None] = lambda: None,
    ) -> None:
        self.out_path = out_path
        self.packets = 0
        self._audio = audio
        self._encoded_audio = encoded_audio
        self._output: av.container.OutputContainer | None = None
        self._video: VideoStream | None = None
        self._origin_seconds = 0.0

    def add(self, segment: Path) -> None:
        """Copy the next segment's video packets into the mp4."""
        with av.open(str(segment)) as source:
            stream = source.streams.video[0]
            output, video = self._opened(stream)
            assert stream.time_base is not None  # noqa: S101  # nosec B101 (demuxed streams)
            shift = round(self._origin_seconds / stream.time_base)
            for packet in source.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.pts is not None:
                    packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
                packet.stream = video
                output.mux(packet)
                self.packets += 1

    def close(self) -> int:
        """Finish the mp4 (index, faststart); returns the video packets (= frames) in it."""
        if self._output is None:
            raise ValueError("no segments to join")
        output, self._output = self._output, None
        output.close()
        return self.packets

    def abort(self) -> None:
        """Close and delete a partial mp4."""
        output, self._output = self._output, None
        if output is not None:
            try:
                output.close()
            except (OSError, av.error.FFmpegError):
                log.warning("a partial mp4 did not close cleanly before its removal")
        self.out_path.unlink(missing_ok=True)

    def _opened(self, template: VideoStream) -> tuple[av.container.OutputContainer, VideoStream]:
        """The mp4 and its video stream, made from the first segment's stream and the audio."""
        if self._output is not None and self._video is not None:
            return self._output, self._video
        output = av.open(str(self.out_path), "w", options=_container_options(self.out_path))
        try:
            video = output.add_stream_from_template(template)
            self._origin_seconds = float((template.start_time or 0) * (template.time_base or 0))
            encoded = self._encoded_audio()
            if encoded is not None:
                _copy_audio(output, encoded)
            else:
                audio_stream = add_audio_stream(output, self._audio)
                if audio_stream is not None:
                    mux_audio(output, audio_stream, self._audio)
        except BaseException:
            output.close()
            self.out_path.unlink(missing_ok=True)
            raise
        self._output, self._video = output, video
        return output, video


def _copy_audio(output: av.container.OutputContainer, encoded: Path) -> None:
    """Every packet of `encoded`'s audio track into a new stream of `output`, unchanged."""
    source = av.open(str(encoded))
    try:
        stream = source.streams.audio[0]
        target = output.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.size == 0:
                continue
            packet.stream = target
            output.mux(packet)
    finally:
        source.close()
