"""`submit` decodes the first frame of each file with PyAV before uploading anything: a file the
engine could not read fails at once, naming the argument, and nothing reaches the API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runtime.cli.errors import ExitCode
from tests.unit.cli.fake_api import FakeApi
from tests.unit.cli.test_cli_commands import run


def _broken(tmp_path: Path, media: dict[str, Path], case: str) -> tuple[Path, Path, str]:
    """(avatar, audio, field at fault) for each way a file can be unreadable."""
    avatar, audio = media["video"], media["audio"]
    if case == "empty video":
        avatar = tmp_path / "face.mp4"
        avatar.write_bytes(b"")
        return avatar, audio, "avatar"
    if case == "text named .mp4":
        avatar = tmp_path / "face.mp4"
        avatar.write_text("this is not a video\n" * 40)
        return avatar, audio, "avatar"
    if case == "audio named .png":
        avatar = shutil.copyfile(media["audio"], tmp_path / "face.png")
        return avatar, audio, "avatar"
    if case == "image named .wav":
        audio = shutil.copyfile(media["image"], tmp_path / "speech.wav")
        return avatar, audio, "audio"
    audio = tmp_path / "speech.wav"
    audio.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" * 4)
    return avatar, audio, "audio"


@pytest.mark.parametrize(
    "case",
    ["empty video", "text named .mp4", "audio named .png", "image named .wav", "truncated wav"],
)
def test_an_unreadable_file_fails_before_any_upload(
    fake_api: FakeApi, media: dict[str, Path], tmp_path: Path, case: str
) -> None:
    avatar, audio, field = _broken(tmp_path, media, case)
    code, out, _ = run(fake_api, "--json", "submit", str(avatar), str(audio))
    assert code == ExitCode.USAGE
    error = json.loads(out)["error"]
    assert error["field"] == field
    assert str(avatar if field == "avatar" else audio) in error["message"]
    assert fake_api.requests == []  # nothing uploaded, registered or queued


def test_a_still_image_and_real_audio_pass_the_probe(
    fake_api: FakeApi, media: dict[str, Path]
) -> None:
    code, _, _ = run(fake_api, "submit", str(media["image"]), str(media["audio"]))
    assert code == ExitCode.OK
