"""A job's media: inputs fetched from the uploads bucket with the checks that make bad input fail
fast, and the engine's output checked before anyone is told it exists.

Inputs come only from our own uploads bucket, under the job's tenant prefix (anything else is
refused, as defence in depth behind the API's own checks), are size-checked before download,
checksum-verified when the message carries a checksum, and the audio's duration is measured by
decoding it, against the lane limit, before any GPU work.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from botocore.exceptions import ClientError

from runtime.common.jobs import ErrorCode, MediaRef
from runtime.common.keys import tenant_prefix
from runtime.common.limits import LaneLimits, Limits
from runtime.engine.untrusted import DETECTOR_MIN_SIDE, audio_seconds
from runtime.fileio import file_sha256
from runtime.worker.engine_options import decode_limits, engine_failures
from runtime.worker.media_errors import MediaError


@dataclass(frozen=True)
class FetchedInput:
    path: Path
    sha256: str
    size: int


def fetch_input(
    s3: Any,
    ref: MediaRef,
    *,
    tenant: str,
    allowed_bucket: str,
    max_bytes: int,
    dest: Path,
    what: str,
) -> FetchedInput:
    if ref.bucket != allowed_bucket:
        raise MediaError(ErrorCode.INPUT_NOT_FOUND, f"{what}: not in the uploads bucket")
    if not ref.key.startswith(tenant_prefix(tenant)):
        raise MediaError(ErrorCode.INPUT_NOT_FOUND, f"{what}: not under the job's tenant prefix")
    try:
        head = s3.head_object(Bucket=ref.bucket, Key=ref.key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            raise MediaError(ErrorCode.INPUT_NOT_FOUND, f"{what}: object not found") from None
        raise
    size = int(head["ContentLength"])
    if size > max_bytes:
        raise MediaError(
            ErrorCode.MEDIA_TOO_LARGE, f"{what}: {size} bytes exceeds the lane limit {max_bytes}"
        )
    s3.download_file(ref.bucket, ref.key, str(dest))
    sha256 = file_sha256(dest)
    if ref.sha256 is not None and ref.sha256.lower() != sha256:
        raise MediaError(ErrorCode.INVALID_MEDIA, f"{what}: checksum does not match the upload")
    named = dest.with_name(dest.name + media_suffix(dest))
    dest.rename(named)
    return FetchedInput(path=named, sha256=sha256, size=size)


def media_suffix(path: Path) -> str:
    """A file suffix from the content's magic bytes (upload keys carry none).

    The engine tells a still from a video by suffix, and the caller's content type is not
    trusted; anything not recognized gets no suffix and PyAV probes its content.
    """
    with path.open("rb") as stream:
        head = stream.read(16)
    for magic, suffix in _MAGIC:
        if head.startswith(magic):
            return suffix
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[4:8] == b"ftyp":
        return ".mp4"
    return ""


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tiff"),
    (b"MM\x00*", ".tiff"),
)


def check_audio(path: Path, limits: Limits, lane: LaneLimits) -> float:
    """Duration in seconds of the first audio stream, counted by decoding it (headers and
    bitrate estimates lie); MediaError when unusable or past the lane's limit (decoding stops
    there)."""
    try:
        with av.open(str(path)) as container, engine_failures():
            return audio_seconds(container, decode_limits(limits, lane))
    except av.FFmpegError:
        raise MediaError(ErrorCode.INVALID_MEDIA, "audio: not a readable audio file") from None


def check_avatar(path: Path, max_pixels: int) -> None:
    """Refuse an avatar whose frames exceed `max_pixels` before the engine decodes them all.

    Nothing above the limit is decoded: a PNG's size comes from its IHDR, and libavcodec is
    told the limit (`max_pixels`) while probing, so a small file that declares huge frames (a
    compressed flat 16-bit PNG of 16 000 x 16 000) is refused without allocating them. The
    engine checks every decoded frame again (the size may change mid-stream).
    """
    declared = png_size(path)
    if declared is not None and declared[0] * declared[1] > max_pixels:
        raise MediaError(
            ErrorCode.MEDIA_TOO_LARGE,
            f"avatar: {declared[0]}x{declared[1]} exceeds the limit of {max_pixels} pixels per"
            " frame",
        )
    try:
        # PyAV's stub types stream_options as list[str]; it takes one dict of options a stream.
        probe = [{"max_pixels": str(max_pixels)}]
        with av.open(str(path), stream_options=probe) as container:  # type: ignore[arg-type]
            if not container.streams.video:
                raise MediaError(ErrorCode.INVALID_MEDIA, "avatar: no image or video stream")
            context = container.streams.video[0].codec_context
            width, height = int(context.width or 0), int(context.height or 0)
    except av.FFmpegError:
        raise MediaError(ErrorCode.INVALID_MEDIA, "avatar: not a readable image or video") from None
    if not width or not height:  # corrupt, or the decoder refused a size above max_pixels
        raise MediaError(
            ErrorCode.INVALID_MEDIA,
            f"avatar: no frame size can be read (corrupt, or above {max_pixels} pixels)",
        )
    if width * height > max_pixels:
        raise MediaError(
            ErrorCode.MEDIA_TOO_LARGE,
            f"avatar: {width}x{height} exceeds the limit of {max_pixels} pixels per frame",
        )
    minimum = DETECTOR_MIN_SIDE
    if min(width, height) < minimum:
        raise MediaError(
            ErrorCode.INVALID_MEDIA,
            f"avatar: {width}x{height} is below the minimum of {minimum} pixels a side",
        )


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk; None for anything else."""
    with path.open("rb") as stream:
        head = stream.read(24)
    if len(head) < 24 or not head.startswith(b"\x89PNG\r\n\x1a\n") or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


class BadOutput(RuntimeError):
    """The engine's file is not the promised video; treated as transient (retried, then FAILED)."""


def check_output(path: Path, *, frames: int) -> None:
    """What callers are promised: an H.264 mp4 with an audio track, before it is published."""
    if frames <= 0:
        raise BadOutput("the engine rendered no frames")
    try:
        with av.open(str(path)) as container:
            video = container.streams.video
            if not video or video[0].codec_context.name != "h264":
                raise BadOutput("the engine's output has no H.264 video stream")
            if not container.streams.audio:
                raise BadOutput("the engine's output has no audio stream")
    except av.FFmpegError:
        raise BadOutput("the engine's output is not a readable video") from None
