"""Avatar decoding with PyAV, within limits: BGR frames (the spec's OpenCV convention) and the
stream's fps; a still image is one frame at the caller's fps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from runtime.engine.engine_contract import Failure, Interrupted, MediaError
from runtime.engine.untrusted import (
    DecodeLimits,
    OversizedMedia,
    UnreadableMedia,
    check_frame_size,
)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class DecodedVideo:
    frames: list[np.ndarray]  # BGR uint8 [H, W, 3]
    fps: float
    is_still: bool


def decode_avatar(
    path: Path,
    *,
    still_fps: int,
    max_frames: int | None = None,
    limits: DecodeLimits | None = None,
) -> DecodedVideo:
    """All frames of a video (native rate, no resampling) or the single frame of an image.

    A video longer than `max_frames` is refused (MEDIA_TOO_LARGE) as soon as the decoder
    passes the limit: a prepared avatar keeps every frame in memory.
    """
    reader = AvatarReader(path, still_fps=still_fps, max_frames=max_frames, limits=limits)
    frames = list(reader.frames())
    return DecodedVideo(frames=frames, fps=reader.fps, is_still=reader.is_still)


class AvatarReader:
    """`decode_avatar` one frame at a time, so preparation can work on the first frames while
    the decoder reads the rest. `fps` is known once `frames()` is exhausted.

    Every decoded frame is checked against `limits` (headers lie: a stream may change its
    size mid-way): libavcodec itself refuses frames above `max_pixels` (`max_pixels` codec
    option, so nothing that size is allocated), every frame must have the first one's size,
    and the BGR frames together stay under `max_decoded_bytes`. `should_stop` is polled per
    frame (cancel, deadline, lease lost): `Interrupted` when it turns true.
    """

    def __init__(
        self,
        path: Path,
        *,
        still_fps: int,
        max_frames: int | None = None,
        limits: DecodeLimits | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.path = path
        self.still_fps = still_fps
        self.max_frames = max_frames
        self.limits = limits or DecodeLimits()
        self.should_stop = should_stop or (lambda: False)
        self.is_still = path.suffix.lower() in IMAGE_SUFFIXES
        self.fps = 0.0

    def frames(self) -> Iterator[np.ndarray]:
        """BGR uint8 [H, W, 3] frames; MediaError for bad media, too many frames or none."""
        count = 0
        decoded_bytes = 0
        size: tuple[int, int] | None = None
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise MediaError(Failure.INVALID_MEDIA, "the avatar has no video stream")
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                stream.codec_context.options = {"max_pixels": str(self.limits.max_pixels)}
                for frame in container.decode(stream):
                    if self.should_stop():
                        raise Interrupted("stopped while decoding the avatar")
                    if self.max_frames is not None and count == self.max_frames:
                        raise MediaError(
                            Failure.MEDIA_TOO_LARGE,
                            f"the avatar video has more than {self.max_frames} frames",
                        )
                    size = self._checked_size(frame, size)
                    decoded_bytes += 3 * frame.width * frame.height
                    if decoded_bytes > self.limits.max_decoded_bytes:
                        raise OversizedMedia(
                            f"avatar: more than {self.limits.max_decoded_bytes} bytes of decoded"
                            f" frames ({count + 1} frames of {frame.width}x{frame.height})"
                        )
                    yield frame.to_ndarray(format="bgr24")
                    count += 1
                    if self.is_still:
                        break
                rate = stream.average_rate or stream.guessed_rate
        except av.error.FFmpegError as error:
            raise MediaError(
                Failure.INVALID_MEDIA,
                "the avatar cannot be decoded (corrupt, or a frame above the limit of"
                f" {self.limits.max_pixels} pixels)",
            ) from error
        if not count:
            raise MediaError(Failure.INVALID_MEDIA, "the avatar has no frames")
        fps = float(self.still_fps) if self.is_still or not rate else float(rate)
        if fps < 1:  # the audio windows use int(fps) frames per second
            raise MediaError(Failure.INVALID_MEDIA, f"the avatar's frame rate {fps:g} is below 1")
        if fps > self.limits.max_fps:
            raise UnreadableMedia(
                f"avatar: frame rate {fps:g} is above the limit of {self.limits.max_fps:g}"
            )
        self.fps = fps

    def _checked_size(self, frame: av.VideoFrame, first: tuple[int, int] | None) -> tuple[int, int]:
        """The frame's size, refused above the pixel limit or when it differs from the first."""
        check_frame_size(frame.width, frame.height, self.limits, "avatar")
        if first is not None and first != (frame.width, frame.height):
            raise UnreadableMedia(
                f"avatar: the frame size changes mid-stream ({first[0]}x{first[1]} to"
                f" {frame.width}x{frame.height})"
            )
        if min(frame.width, frame.height) < self.limits.min_side:
            raise UnreadableMedia(
                f"avatar: {frame.width}x{frame.height} frames are below the minimum of"
                f" {self.limits.min_side} pixels a side"
            )
        return frame.width, frame.height
