"""Fixtures for the worker against the emulator: the shared moto server, one isolated
deployment per test (its own stage name), and in-process workers built as `main()` builds them."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from runtime.common.jobs import ErrorCode, JobStatus
from runtime.engine.engine_contract import LipSyncEngine
from runtime.worker.config import WorkerSettings
from runtime.worker.gpu import GpuProbe
from runtime.worker.job_runner import Outcome
from runtime.worker.service import AwsClients, Worker
from runtime.worker.telemetry import MetricsSink
from tests.support.small_engine import SmallEngine
from tests.support.waiting import eventually
from tests.support.worker_world import WorkerWorld, create_world

MakeWorker = Callable[..., Worker]


@pytest.fixture
def world(moto_env: str) -> WorkerWorld:
    return create_world(moto_env)


@pytest.fixture(scope="session")
def worker_session() -> boto3.session.Session:
    """The workers' boto3 session, shared by every in-process worker of the test session: each
    still gets its own clients, without parsing the service models again. It reads the endpoint,
    region and dummy credentials from the environment `moto_env` sets (the same in every test)."""
    return boto3.session.Session()


@pytest.fixture
def make_worker(
    world: WorkerWorld, tmp_path: Path, worker_session: boto3.session.Session
) -> Iterator[MakeWorker]:
    workers: list[Worker] = []

    def make(
        engine: LipSyncEngine | None = None, gpu: GpuProbe | None = None, **env: str
    ) -> Worker:
        settings = WorkerSettings.from_env(world.env(tmp_path / "models", **env))
        worker = Worker(
            settings=settings,
            engine=engine or SmallEngine(),
            clients=AwsClients.create(worker_session),
            metrics=MetricsSink(stream=io.StringIO()),
            gpu=gpu,
        )
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close()


class InBackground:
    """One `worker.run_once()` on a thread, for tests that act while its job runs."""

    def __init__(self, worker: Worker) -> None:
        self._outcomes: list[Outcome | None] = []
        self._thread = threading.Thread(target=lambda: self._outcomes.append(worker.run_once()))
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def outcome(self, timeout: float = 60) -> Outcome | None:
        """Wait for the run to end; what it returned."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the worker's run did not end within {timeout} s"
        return self._outcomes[0]


def wait_for_status(world: WorkerWorld, job_id: str, status: JobStatus) -> None:
    eventually(
        lambda: world.record(job_id).status is status,
        timeout=20,
        what=f"the job to reach {status.value}",
    )


def ended(world: WorkerWorld, job_id: str) -> tuple[JobStatus, ErrorCode | None]:
    """The job's status and its error code (None without an error), to assert in one line."""
    record = world.record(job_id)
    return record.status, None if record.error is None else record.error.code
