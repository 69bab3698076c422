"""Downloaded inputs get a suffix from their bytes, so the engine can tell stills from videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.worker.inputs import media_suffix

MEDIA = Path(__file__).resolve().parents[3] / "examples" / "media"


@pytest.mark.parametrize(
    ("name", "suffix"),
    [("musk.png", ".png"), ("yongen.mp4", ".mp4"), ("yongen.wav", ".wav"), ("eng.wav", ".wav")],
)
def test_sample_media_are_recognized_by_content(name: str, suffix: str, tmp_path: Path) -> None:
    copy = tmp_path / "upload"  # upload keys have no suffix
    copy.write_bytes((MEDIA / name).read_bytes())
    assert media_suffix(copy) == suffix


def test_a_jpeg_is_a_still_and_unknown_bytes_get_a_neutral_suffix(tmp_path: Path) -> None:
    jpeg = tmp_path / "a"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    unknown = tmp_path / "b"
    unknown.write_bytes(b"\x1aE\xdf\xa3webm-ish")
    assert media_suffix(jpeg) == ".jpg"
    assert media_suffix(unknown) == ""
