"""Only an H.264 mp4 with audio is published as a job's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.engine.options import AvatarOptions, RenderOptions
from runtime.worker.inputs import BadOutput, check_output
from tests.support.small_engine import SmallEngine

MEDIA = Path(__file__).resolve().parents[3] / "examples" / "media"


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[Path, int]:
    engine = SmallEngine()
    prepared = engine.prepare(MEDIA / "musk.png", AvatarOptions())
    out = tmp_path / "out.mp4"
    result = engine.speak(prepared, MEDIA / "yongen.wav", out, options=RenderOptions())
    return out, result.frames


def test_a_rendered_mp4_with_audio_passes(rendered: tuple[Path, int]) -> None:
    path, frames = rendered
    check_output(path, frames=frames)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("silent.mp4", None),  # yongen.mp4 has no audio track
        ("still.png", None),
        ("garbage.mp4", b"\0" * 1000),
    ],
)
def test_anything_else_is_refused(name: str, content: bytes | None, tmp_path: Path) -> None:
    source = {"silent.mp4": MEDIA / "yongen.mp4", "still.png": MEDIA / "musk.png"}.get(name)
    path = source if source is not None else tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadOutput):
        check_output(path, frames=10)


def test_a_valid_file_that_claims_zero_frames_is_refused(rendered: tuple[Path, int]) -> None:
    path, _ = rendered
    with pytest.raises(BadOutput, match="no frames"):
        check_output(path, frames=0)
