"""SIGTERM (spot interruption, scale-in) against a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from runtime.common.jobs import JobStatus
from runtime.common.names import EnvVar, Lane
from tests.integration.worker.conftest import MakeWorker
from tests.support.waiting import eventually
from tests.support.worker_world import WorkerWorld, free_port

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


@contextmanager
def worker_process(
    world: WorkerWorld,
    tmp_path: Path,
    *,
    seconds_per_frame: float,
    stop_timeout: float,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A `python -m runtime.worker` process on the small engine, ready (readyz 200) on entry."""
    port = free_port()
    env = {
        **os.environ,
        **world.env(
            tmp_path / "models",
            **{
                EnvVar.HEALTH_PORT: str(port),
                EnvVar.STOP_TIMEOUT_SECONDS: str(stop_timeout),
                EnvVar.POLL_WAIT_SECONDS: "1",
                **(extra_env or {}),
            },
        ),
        "SMALL_ENGINE_SECONDS_PER_FRAME": str(seconds_per_frame),
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / f"worker-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.worker"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _ready(base, process), timeout=60, what="the worker's /readyz")
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def _ready(base: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"worker exited early with {process.returncode}")
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_sigterm_mid_job_hands_the_job_back_and_another_worker_finishes_it(
    world: WorkerWorld, make_worker: MakeWorker, tmp_path: Path
) -> None:
    # Given a worker rendering a job that needs ~10 s more than its 2 s stop timeout
    with worker_process(world, tmp_path, seconds_per_frame=0.05, stop_timeout=2) as (process, _):
        message = world.submit()
        eventually(
            lambda: world.record(message.job_id).status is JobStatus.RENDERING,
            timeout=30,
            what="the job to start rendering",
        )

        # When the task is told to stop
        process.send_signal(signal.SIGTERM)

        # Then the process exits cleanly well within the stop timeout window
        assert process.wait(timeout=20) == 0

    # And the job is QUEUED again with its attempt kept, and its message visible at once
    record = world.record(message.job_id)
    assert (record.status, record.attempt, record.lease_owner) == (JobStatus.QUEUED, 1, None)
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 1

    # When another worker polls, it finishes the job as the second attempt
    other = make_worker()
    eventually(other.run_once, timeout=10, what="the other worker to take the job")
    record = world.record(message.job_id)
    assert (record.status, record.attempt) == (JobStatus.SUCCEEDED, 2)


def test_sigterm_lets_a_job_that_fits_in_the_stop_timeout_finish(
    world: WorkerWorld, tmp_path: Path
) -> None:
    # Given a worker rendering a short job (~4 s) with a 60 s stop timeout
    with worker_process(world, tmp_path, seconds_per_frame=0.02, stop_timeout=60) as (
        process,
        base,
    ):
        message = world.submit()
        eventually(
            lambda: world.record(message.job_id).status is JobStatus.RENDERING,
            timeout=30,
            what="the job to start rendering",
        )

        # When the task is told to stop
        process.send_signal(signal.SIGTERM)

        # Then it reports not ready at once, finishes the job, and exits cleanly
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 503
        assert process.wait(timeout=30) == 0

    record = world.record(message.job_id)
    assert (record.status, record.attempt) == (JobStatus.SUCCEEDED, 1)
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0
