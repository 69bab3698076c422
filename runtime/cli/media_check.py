"""Probe a local media file with PyAV before uploading it.

A file the engine cannot decode would otherwise travel to S3, register an avatar or queue a job,
and fail minutes later on a worker. Opening it here and decoding its first frame costs
milliseconds and names the argument at fault. PyAV is imported lazily: commands that upload
nothing never load it.
"""

from __future__ import annotations

from pathlib import Path

from runtime.cli.client import media_type
from runtime.cli.errors import CliError, ExitCode


def check_media(path: Path, *, field: str) -> None:
    """Raise a usage error naming `field` unless `path` decodes as the kind its name says."""
    import av

    kind, _ = media_type(path)
    if path.stat().st_size == 0:
        raise CliError(ExitCode.USAGE, f"{path}: the file is empty", field=field)
    wanted = "audio" if kind == "audio" else "video"  # an image is a one-frame video to FFmpeg
    try:
        with av.open(str(path)) as container:
            streams = getattr(container.streams, wanted)
            if not streams:
                raise CliError(
                    ExitCode.USAGE, f"{path}: no {wanted} stream in this {kind} file", field=field
                )
            if next(container.decode(streams[0]), None) is None:
                raise CliError(
                    ExitCode.USAGE, f"{path}: this {kind} file has no decodable frame", field=field
                )
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise CliError(
            ExitCode.USAGE, f"{path}: not a readable {kind} file ({error})", field=field
        ) from None
