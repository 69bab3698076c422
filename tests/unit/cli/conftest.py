"""Fixtures of the CLI tests: the fake API, sample files, and a moto server for S3 work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.local.emulator import moto_server
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


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server (real HTTP) for the session; tests use their own bucket names."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def emulator_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    """Point boto3 (as the CLI creates it) at the emulator with dummy credentials."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint
