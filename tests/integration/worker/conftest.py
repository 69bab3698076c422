"""Fixtures for the worker against the emulator: the shared moto server, one isolated
deployment per test (its own stage name), and in-process workers built as `main()` builds them."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.engine.interface import LipSyncEngine
from runtime.worker.config import WorkerSettings
from runtime.worker.gpu import GpuProbe
from runtime.worker.service import AwsClients, Worker
from runtime.worker.telemetry import MetricsSink
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import WorkerWorld, create_world

MakeWorker = Callable[..., Worker]


@pytest.fixture
def world(moto_env: str) -> WorkerWorld:
    return create_world(moto_env)


@pytest.fixture
def make_worker(world: WorkerWorld, tmp_path: Path) -> Iterator[MakeWorker]:
    workers: list[Worker] = []

    def make(
        engine: LipSyncEngine | None = None, gpu: GpuProbe | None = None, **env: str
    ) -> Worker:
        settings = WorkerSettings.from_env(world.env(tmp_path / "models", **env))
        worker = Worker(
            settings=settings,
            engine=engine or SmallEngine(),
            clients=AwsClients.create(),
            metrics=MetricsSink(stream=io.StringIO()),
            gpu=gpu,
        )
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close()
