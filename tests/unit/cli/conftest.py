"""Fixtures of the CLI tests: the fake API, sample files, and the shared moto server for S3."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from tests.unit.cli.fake_api import FakeApi

EXAMPLES_MEDIA = Path(__file__).resolve().parents[3] / "examples" / "media"


@pytest.fixture
def fake_api() -> FakeApi:
    return FakeApi()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real media: the CLI decodes a file's first frame before uploading it."""
    directory = tmp_path_factory.mktemp("media")
    return {
        "video": write_video(directory / "face.mp4"),
        "image": write_image(directory / "face.png"),
        "audio": write_wav(directory / "speech.wav"),
    }


def write_video(path: Path, frames: int = 2) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(frames):
            picture = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    return path


def write_image(path: Path) -> Path:
    shutil.copyfile(EXAMPLES_MEDIA / "musk.png", path)
    return path


def write_wav(path: Path, seconds: float = 0.2, rate: int = 16_000) -> Path:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(b"\x00\x00" * int(seconds * rate))
    return path


@pytest.fixture
def emulator_env(moto_env: str) -> str:
    """Point boto3 (as the CLI creates it) at the shared emulator with dummy credentials."""
    return moto_env
