"""Cold start: the model libraries import on a thread while the weights sync."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from runtime.common.names import EnvVar
from runtime.worker import service
from runtime.worker.config import DEFAULT_ENGINE_FACTORY, WorkerSettings
from runtime.worker.engine_loader import start_preload
from runtime.worker.telemetry import MetricsSink
from runtime.worker.weights_sync import SyncResult
from tests.support.small_engine import SmallEngine
from tests.unit.worker.test_settings_and_engine_seam import BASE


def test_only_the_eager_default_factory_preloads_and_it_imports_the_model_libraries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given another engine factory / When preloading starts / Then nothing is started
    assert start_preload("tests.support.small_engine:load") is None
    # Given the default factory compiled from AOT packages, which needs neither library
    # Then nothing is started either
    monkeypatch.setenv(EnvVar.COMPILE, "aot")
    assert start_preload(DEFAULT_ENGINE_FACTORY) is None

    # Given the default factory with eager models (the default) / When preloading starts and
    # finishes
    monkeypatch.delenv(EnvVar.COMPILE)
    thread = start_preload(DEFAULT_ENGINE_FACTORY)
    assert thread is not None
    thread.join(timeout=300)

    # Then the libraries `MuseTalkEngine.load` needs are imported
    assert not thread.is_alive()
    assert {"diffusers", "transformers"} <= sys.modules.keys()


def test_start_up_preloads_while_the_weights_sync_and_loads_after_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker with a weights bucket, whose preload waits until the sync has begun
    settings = WorkerSettings.from_env(
        {str(k): v for k, v in {**BASE, EnvVar.WEIGHTS_BUCKET: "w"}.items()}
    )
    events: list[str] = []
    syncing = threading.Event()

    def preload() -> None:
        assert syncing.wait(timeout=60)  # still running while the weights sync
        events.append("preloaded")

    def start(spec: str) -> threading.Thread:
        thread = threading.Thread(target=preload)
        thread.start()
        return thread

    def sync(*args: object, **kwargs: object) -> SyncResult:
        syncing.set()
        events.append("synced")
        return SyncResult(downloaded=(), kept=())

    def load(*args: object, **kwargs: object) -> SmallEngine:
        events.append("loaded")
        return SmallEngine()

    monkeypatch.setattr(service, "start_preload", start)
    monkeypatch.setattr(service, "sync_when_published", sync)
    monkeypatch.setattr(service, "load_engine", load)
    clients = SimpleNamespace(s3=object())
    monkeypatch.setattr(service.AwsClients, "create", classmethod(lambda cls: clients))
    monkeypatch.setattr(service, "Worker", lambda **parts: parts)

    # When the worker starts
    parts: Any = service._start(settings, MetricsSink(), service.StopPolicy(60), [])

    # Then the engine loaded once both the sync and the preload were done
    assert events[-1] == "loaded"
    assert sorted(events[:2]) == ["preloaded", "synced"]
    assert isinstance(parts["engine"], SmallEngine)
