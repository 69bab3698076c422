"""Which H.264 encoder a render gets: NVENC where it opens on this machine, else libx264 with a
preset. The choice has a name (`VideoEncoding.name`) because segments encoded one way cannot be
joined with segments encoded another: a worker resumes a render only under the same encoding."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import av

log = logging.getLogger(__name__)

_nvenc_usable: bool | None = None


def pick_video_codec(prefer_gpu: bool) -> str:
    """`h264_nvenc` when it actually opens on this machine (checked once), else libx264."""
    global _nvenc_usable  # a process-wide probe result
    if not prefer_gpu:
        return "libx264"
    if _nvenc_usable is None:
        try:
            context = av.CodecContext.create("h264_nvenc", "w")
            context.width, context.height, context.pix_fmt = 256, 256, "yuv420p"
            context.time_base = Fraction(1, 25)
            context.open()
            _nvenc_usable = True
        except (av.error.FFmpegError, ValueError) as error:
            log.info("h264_nvenc unavailable, using libx264: %s", error)
            _nvenc_usable = False
    return "h264_nvenc" if _nvenc_usable else "libx264"


@dataclass(frozen=True)
class VideoEncoding:
    """A render's video encoder and libx264 preset (NVENC ignores it). Segments joined into one
    mp4 must share it: the join keeps the first segment's H.264 parameter sets for them all."""

    codec: str
    preset: str

    @property
    def name(self) -> str:
        """`h264_nvenc` or `libx264/<preset>`: what an earlier attempt's segments must match."""
        return f"{self.codec}/{self.preset}" if self.codec == "libx264" else self.codec


def pick_video_encoding(prefer_gpu: bool, preset: str) -> VideoEncoding:
    """The encoding a writer gets: `pick_video_codec`'s codec with `preset`."""
    return VideoEncoding(pick_video_codec(prefer_gpu), preset)
