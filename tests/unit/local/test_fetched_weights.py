"""Local mode uses the official weights `musetalk fetch-weights` left in its cache, and says so;
`--models` still wins, and an incomplete cache is not used."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli.models_cache import ENV_MODELS_CACHE
from runtime.engine.layout import ModelsLayout
from runtime.local.main import _models_dir


def _complete(root: Path) -> Path:
    for path in ModelsLayout(root).required_files():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"w")
    return root


def test_the_fetched_cache_is_used_and_announced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = _complete(tmp_path / "cache")
    monkeypatch.setenv(ENV_MODELS_CACHE, str(cache))
    assert _models_dir(None) == cache
    assert f"official MuseTalk v1.5 weights in {cache}" in capsys.readouterr().err
    assert _models_dir(tmp_path / "mine") == tmp_path / "mine"  # --models wins


def test_an_incomplete_cache_means_random_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _complete(tmp_path / "cache")
    ModelsLayout(cache).unet_weights.unlink()  # e.g. an interrupted fetch
    monkeypatch.setenv(ENV_MODELS_CACHE, str(cache))
    assert _models_dir(None) is None
