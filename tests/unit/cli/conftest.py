"""Fixtures of the CLI tests: the fake API, sample files, and the shared moto server for S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli.fake_api import FakeApi


@pytest.fixture
def fake_api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Path]:
    files = {"video": tmp_path / "face.mp4", "image": tmp_path / "face.png"}
    files["audio"] = tmp_path / "speech.wav"
    for path in files.values():
        path.write_bytes(b"RIFF-or-whatever" * 8)
    return files


@pytest.fixture
def emulator_env(moto_env: str) -> str:
    """Point boto3 (as the CLI creates it) at the shared emulator with dummy credentials."""
    return moto_env
