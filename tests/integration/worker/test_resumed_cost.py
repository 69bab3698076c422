"""A resumed job's cost counts every attempt's GPU time, and its progress never goes back
although the resumed attempt restarts at its first missing segment."""

from __future__ import annotations

import time
from typing import Any

import pytest

from runtime.common.jobs import JobStatus
from runtime.common.names import EnvVar
from runtime.engine.engine_contract import ProgressFn, Rendered
from runtime.worker import job_render
from runtime.worker.job_runner import Outcome
from tests.integration.worker.conftest import MakeWorker
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import WorkerWorld

SEGMENTED = {EnvVar.SEGMENT_FRAMES: "50", EnvVar.HEARTBEAT_SECONDS: "0.2"}


class ProgressReader(SmallEngine):
    """Reads the job's recorded `frames_done` after every progress report (as a poller would)."""

    def __init__(self, world: WorkerWorld, job_id: str) -> None:
        super().__init__(default_batch_size=8)
        self._world, self._job_id = world, job_id
        self.seen: list[int | None] = []

    def speak(self, *args: Any, progress: ProgressFn | None = None, **kwargs: Any) -> Rendered:
        def reading(done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)
            self.seen.append(self._world.record(self._job_id).frames_done)

        return super().speak(*args, progress=reading, **kwargs)


def test_a_resumed_job_costs_every_attempt_and_its_progress_never_goes_back(
    world: WorkerWorld, make_worker: MakeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_render, "PROGRESS_WRITE_SECONDS", 0.0)  # record every report
    # Given a job whose first attempt renders 112 frames (at least 1.1 s of GPU time) and is
    # stopped (SIGTERM) after two 50-frame segments
    message = world.submit()
    engine = SmallEngine(default_batch_size=8, seconds_per_frame=0.01)
    first = make_worker(engine, **SEGMENTED, **{EnvVar.STOP_TIMEOUT_SECONDS: "0"})
    engine.after_batch = lambda done: first.stop.request() if done >= 110 else None
    started = time.monotonic()
    assert first.run_once() is Outcome.INTERRUPTED
    first_wall = time.monotonic() - started
    stopped_at = world.record(message.job_id).frames_done
    assert stopped_at is not None
    assert stopped_at > 100

    # When a second worker resumes it at frame 100 and finishes
    resumed = ProgressReader(world, message.job_id)
    assert make_worker(resumed, **SEGMENTED).run_once() is Outcome.SUCCEEDED

    # Then the recorded progress never went below what the first attempt had reached
    assert resumed.rendered_from == [100]
    assert resumed.seen
    assert all(seen is not None and seen >= stopped_at for seen in resumed.seen)
    # And the job's GPU seconds count the first attempt (up to its last heartbeat) too
    record = world.record(message.job_id)
    assert record.status is JobStatus.SUCCEEDED
    timings = record.timings
    second = (
        sum(
            (getattr(timings, stage) or 0.0)
            for stage in ("download_ms", "prepare_ms", "speak_ms", "encode_ms", "upload_ms")
        )
        / 1000
    )
    assert record.gpu_seconds is not None
    assert record.gpu_seconds >= second + 1.0
    assert record.gpu_seconds <= second + first_wall + 0.5
