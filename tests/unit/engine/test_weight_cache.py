"""The converted weight copy that makes a cold start fast, and the compile-artifact file.

On tiny random weights in the official layout: the cached copy must give the same models,
notice changed sources, survive a broken or unwritable cache, and leave the models directory
exactly as it was.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine import compile_cache, weight_cache
from runtime.engine.audio import AudioEncoder
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.latents import Generator, LatentCodec
from runtime.engine.layout import ModelsLayout
from runtime.engine.weight_cache import WeightCache, default_cache_dir
from tests.unit.engine.standins import CentreLocator, LowerHalfParser

CPU = torch.device("cpu")


def load_models(layout: ModelsLayout, cache: WeightCache) -> tuple[Generator, LatentCodec]:
    generator = Generator(layout.unet_config, layout.unet_weights, CPU, torch.float32, cache=cache)
    return generator, LatentCodec(layout.vae_dir, CPU, torch.float32, cache=cache)


def faces_of(generator: Generator, codec: LatentCodec) -> torch.Tensor:
    rng = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 8, 32, 32, generator=rng)
    audio = torch.randn(2, 50, 384, generator=rng)
    return codec.decode(generator.step(latents, audio))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        path.relative_to(root).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_first_load_fills_the_cache_and_the_next_loads_the_same_models_from_it(
    tiny_models: ModelsLayout, tmp_path: Path
) -> None:
    # Given an empty cache directory and the official layout
    before = snapshot(tiny_models.root)
    first = WeightCache(tmp_path / "cache")
    # When the models load twice through the cache
    reference = faces_of(*load_models(tiny_models, first))
    again = WeightCache(tmp_path / "cache")
    generator, codec = load_models(tiny_models, again)
    # Then the first load read the sources and wrote one file per model, the second read those
    assert first.hits == []
    assert again.hits == ["unet", "vae"]
    assert first.path("unet", torch.float32).is_file()
    # and the models are the same (bit for bit: same tensors, same dtype)
    assert torch.equal(faces_of(generator, codec), reference)
    # and the models directory is untouched
    assert snapshot(tiny_models.root) == before


def test_whisper_encoder_loads_from_the_cache_with_the_same_features(
    tiny_models: ModelsLayout, tmp_path: Path
) -> None:
    # Given speech-like noise and an encoder loaded from the sources
    audio = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1
    cold = WeightCache(tmp_path)
    expected = AudioEncoder(tiny_models.whisper_dir, CPU, torch.float32, cache=cold).features(audio)
    # When it loads again from the cache
    warm = WeightCache(tmp_path)
    features = AudioEncoder(tiny_models.whisper_dir, CPU, torch.float32, cache=warm).features(audio)
    # Then it came from the cache and computes the same features
    assert warm.hits == ["whisper_encoder"]
    assert torch.equal(features, expected)


def test_a_changed_source_file_is_noticed_and_the_copy_rebuilt(
    tiny_models: ModelsLayout, tmp_path: Path
) -> None:
    # Given a filled cache
    load_models(tiny_models, WeightCache(tmp_path))
    # When the UNet weights file changes (a new download: another modification time)
    stat = tiny_models.unet_weights.stat()
    os.utime(tiny_models.unet_weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        rebuilt = WeightCache(tmp_path)
        load_models(tiny_models, rebuilt)
        # Then the UNet is read from the sources again (and the VAE still from the cache)
        assert rebuilt.hits == ["vae"]
        # and the rewritten copy serves the next load
        after = WeightCache(tmp_path)
        load_models(tiny_models, after)
        assert after.hits == ["unet", "vae"]
    finally:
        os.utime(tiny_models.unet_weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_corrupted_copy_is_rebuilt_and_the_models_still_load(
    tiny_models: ModelsLayout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a filled cache whose UNet copy is then truncated
    reference = faces_of(*load_models(tiny_models, WeightCache(tmp_path)))
    path = WeightCache(tmp_path).path("unet", torch.float32)
    path.write_bytes(path.read_bytes()[:1000])
    # When the models load
    cache = WeightCache(tmp_path)
    with caplog.at_level(logging.WARNING):
        models = load_models(tiny_models, cache)
    # Then the UNet came from the sources, with a warning, and is right
    assert cache.hits == ["vae"]
    assert "unet.float32.safetensors" in caplog.text
    assert torch.equal(faces_of(*models), reference)


def test_an_unwritable_cache_only_costs_the_speed(
    tiny_models: ModelsLayout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a cache "directory" that is a file (cannot be created)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("x")
    # When the models load
    with caplog.at_level(logging.WARNING):
        generator, codec = load_models(tiny_models, WeightCache(blocked))
    # Then they load from the sources, and the warning says the copy was not written
    assert faces_of(generator, codec).shape == (2, 3, 256, 256)
    assert "not written" in caplog.text


def test_the_default_cache_sits_beside_the_models_directory(tmp_path: Path) -> None:
    # Given a models directory; Then its cache is a sibling, never inside it
    assert default_cache_dir(tmp_path / "models") == tmp_path.resolve() / "models.cache"


def test_the_default_cache_moves_to_the_cache_home_when_beside_is_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a models directory whose parent cannot be written (the image's /models under /)
    monkeypatch.setattr(weight_cache.os, "access", lambda path, mode: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    # Then the cache goes under the user's cache home, one directory per models path
    chosen = default_cache_dir(tmp_path / "models")
    assert chosen.parent == tmp_path / "home-cache" / "musetalk"
    assert chosen.name.startswith("models-")
    assert chosen != default_cache_dir(tmp_path / "other" / "models")


def test_compile_artifacts_round_trip_through_their_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given torch's artifact calls recorded (a real compile takes ~25 s on a CI core)
    loaded: list[bytes] = []
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"kernels", None))
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", lambda data: loaded.append(data))
    path = compile_cache.artifacts_path(tmp_path / "cache", CPU, torch.float16, "reduce-overhead")
    # When nothing is saved yet, then saved, then loaded
    assert not compile_cache.load_artifacts(path)
    assert compile_cache.save_artifacts(path)
    monkeypatch.setattr(
        torch.compiler, "load_cache_artifacts", lambda data: loaded.append(data) or object()
    )
    # Then the file holds the artifacts, keyed by torch version, card, dtype and mode
    assert compile_cache.load_artifacts(path)
    assert loaded == [b"kernels"]
    assert torch.__version__.lower().split("+")[0] in path.name
    assert "cpu" in path.name
    assert "float16" in path.name
    assert "reduce_overhead" in path.name
    other_mode = compile_cache.artifacts_path(tmp_path / "cache", CPU, torch.float16, None)
    assert other_mode != path
    assert not compile_cache.load_artifacts(other_mode)  # another mode's file is not this one
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_compile_artifacts_that_torch_rejects_are_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file torch cannot use (it logs and loads nothing)
    path = tmp_path / "compiled.bin"
    path.write_bytes(b"garbage")
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", lambda data: None)
    # Then the engine is told nothing was loaded (so it saves fresh artifacts after compiling)
    assert not compile_cache.load_artifacts(path)


def test_prefetched_copies_are_used_and_a_stale_prefetch_is_discarded(
    tiny_models: ModelsLayout, tmp_path: Path
) -> None:
    # Given a filled cache
    reference = faces_of(*load_models(tiny_models, WeightCache(tmp_path)))
    # When the next load prefetches both copies in the background first
    warm = WeightCache(tmp_path)
    warm.prefetch(["unet", "vae", "absent"], CPU, torch.float32)
    models = load_models(tiny_models, warm)
    # Then both came from the cache, the same models
    assert warm.hits == ["unet", "vae"]
    assert torch.equal(faces_of(*models), reference)
    # And when a source changed after the copy was made, the prefetched read is not used
    stat = tiny_models.unet_weights.stat()
    os.utime(tiny_models.unet_weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        stale = WeightCache(tmp_path)
        stale.prefetch(["unet"], CPU, torch.float32)
        load_models(tiny_models, stale)
        assert stale.hits == ["vae"]
    finally:
        os.utime(tiny_models.unet_weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_engine_load_fills_its_cache_beside_the_models_and_reuses_it(
    tiny_models: ModelsLayout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a cache directory for this test
    cache = tmp_path / "engine-cache"

    def load() -> MuseTalkEngine:
        return MuseTalkEngine.load(
            tiny_models.root,
            "cpu",
            "float32",
            locator=CentreLocator(),
            parser=LowerHalfParser(),
            cache_dir=cache,
        )

    # When the engine loads twice
    load()
    with caplog.at_level(logging.INFO, logger="runtime.engine.engine"):
        engine = load()
    # Then the first load wrote one copy per model, the second read all three (prefetched)
    assert sorted(p.name for p in cache.iterdir()) == [
        "unet.float32.safetensors",
        "vae.float32.safetensors",
        "whisper_encoder.float32.safetensors",
    ]
    assert "['unet', 'vae', 'whisper_encoder']" in caplog.text
    # and the load timings show the library imports apart from each model
    assert {"imports", "unet", "vae", "whisper"} <= engine.load_timings_ms.keys()
