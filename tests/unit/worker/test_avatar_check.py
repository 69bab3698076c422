"""The worker enforces `Limits.max_video_pixels` from the avatar's header, before the engine
decodes a frame (regression: the limit existed but nothing checked it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.poison_media import huge_png
from runtime.common.jobs import ErrorCode
from runtime.common.limits import DEFAULT_LIMITS
from runtime.worker.inputs import check_avatar
from runtime.worker.media_errors import MediaError

MEDIA = Path(__file__).resolve().parents[3] / "examples" / "media"


def test_an_avatar_with_more_pixels_than_the_limit_is_media_too_large(tmp_path: Path) -> None:
    # Given a 500 KB PNG that declares 4500 x 4500 pixels (above 3840 x 2160)
    avatar = huge_png(tmp_path / "huge.png", 4500, 4500)
    assert avatar.stat().st_size < 1024 * 1024

    # When the worker checks it against the default limit
    with pytest.raises(MediaError) as refused:
        check_avatar(avatar, DEFAULT_LIMITS.max_video_pixels)

    # Then it is refused as too large, naming the size
    assert refused.value.code is ErrorCode.MEDIA_TOO_LARGE
    assert "4500x4500" in str(refused.value)


@pytest.mark.parametrize("name", ["musk.png", "yongen.mp4"])
def test_ordinary_avatars_pass(name: str) -> None:
    # Given the sample image and video, When checked, Then nothing is raised
    check_avatar(MEDIA / name, DEFAULT_LIMITS.max_video_pixels)


def test_a_file_that_is_not_media_is_invalid(tmp_path: Path) -> None:
    # Given random bytes behind an avatar upload
    junk = tmp_path / "avatar.mp4"
    junk.write_bytes(b"definitely not a video" * 100)

    # When checked, Then it is INVALID_MEDIA
    with pytest.raises(MediaError) as refused:
        check_avatar(junk, DEFAULT_LIMITS.max_video_pixels)
    assert refused.value.code is ErrorCode.INVALID_MEDIA
