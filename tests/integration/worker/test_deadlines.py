"""`cancel_after` deadlines in the worker: a job not started by its deadline ends EXPIRED without
any download or GPU work; one still rendering at its deadline is stopped and ends CANCELLED."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from runtime.common.jobs import ErrorCode, JobStatus
from runtime.common.keys import output_key
from runtime.common.metrics import Metric
from runtime.common.names import BucketRole, Lane
from runtime.engine.engine_contract import ProgressFn, Rendered
from runtime.worker import deadlines
from runtime.worker.job_runner import Outcome
from runtime.worker.job_store import iso, utc_now
from tests.integration.worker.conftest import MakeWorker, ended
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import WorkerWorld


class ClockJumpingEngine(SmallEngine):
    """Moves the worker's deadline clock two hours ahead once `jump_at_frame` frames are done,
    so "the deadline passes mid-render" happens at a known frame instead of after a sleep."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, jump_at_frame: int) -> None:
        super().__init__(default_batch_size=8)
        self._jump_at = jump_at_frame
        self._offset = timedelta(0)
        monkeypatch.setattr(deadlines, "now", self._now)

    def _now(self) -> datetime:
        return utc_now() + self._offset

    def speak(self, *args: Any, progress: ProgressFn | None = None, **kwargs: Any) -> Rendered:
        def jumping(done: int, total: int) -> None:
            if done >= self._jump_at:
                self._offset = timedelta(hours=2)
            if progress is not None:
                progress(done, total)

        return super().speak(*args, progress=jumping, **kwargs)


def test_a_job_past_its_deadline_expires_without_download_or_gpu_work(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a queued job whose deadline passed while it waited
    message = world.submit(deadline_at=iso(utc_now() - timedelta(seconds=1)))
    engine = SmallEngine()
    worker = make_worker(engine)

    # When a worker receives it
    outcome = worker.run_once()

    # Then it ended EXPIRED with the reason, and the engine never ran
    assert outcome is Outcome.EXPIRED
    assert ended(world, message.job_id) == (JobStatus.EXPIRED, ErrorCode.DEADLINE_EXCEEDED)
    record = world.record(message.job_id)
    assert record.attempt == 0  # never leased
    assert engine.prepare_calls == 0
    assert engine.speak_calls == 0
    assert record.timings.download_ms is None
    # And it was announced once, the message is gone, and the metric counts it
    (envelope,) = world.events()
    event = json.loads(envelope["Message"])
    assert event["type"] == "job.expired"
    assert event["error"]["code"] == "DEADLINE_EXCEEDED"
    assert record.completion_pending is False
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0
    assert worker.metrics.count(Metric.JOBS_EXPIRED) == 1


def test_a_job_rendering_past_its_deadline_is_stopped_and_cancelled_with_the_reason(
    world: WorkerWorld, make_worker: MakeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job with an hour to go, and an engine during which the hour passes at frame 32
    message = world.submit(deadline_at=iso(utc_now() + timedelta(hours=1)))
    engine = ClockJumpingEngine(monkeypatch, jump_at_frame=32)
    worker = make_worker(engine)

    # When the worker runs it
    outcome = worker.run_once()

    # Then the render stopped at the next batch and the job ended CANCELLED with the reason
    assert outcome is Outcome.CANCELLED
    assert ended(world, message.job_id) == (JobStatus.CANCELLED, ErrorCode.DEADLINE_EXCEEDED)
    record = world.record(message.job_id)
    assert "while rendering" in record.error.message
    assert record.frames_total == 200
    assert record.frames_done is not None
    assert record.frames_done < record.frames_total
    assert record.lease_owner is None
    # And no output was written, the event says cancelled, and the message is gone for good
    listed = world.s3.list_objects_v2(
        Bucket=world.bucket(BucketRole.OUTPUTS), Prefix=output_key(message.tenant, message.job_id)
    )
    assert listed.get("KeyCount", 0) == 0
    (envelope,) = world.events()
    assert json.loads(envelope["Message"])["type"] == "job.cancelled"
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0
    assert worker.metrics.count(Metric.JOBS_DEADLINE_CANCELLED) == 1


def test_a_job_with_time_left_is_rendered_as_usual(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job whose deadline is an hour away
    message = world.submit(deadline_at=iso(utc_now() + timedelta(hours=1)))
    worker = make_worker()

    # When the worker runs it, Then it succeeds
    assert worker.run_once() is Outcome.SUCCEEDED
    assert world.record(message.job_id).status is JobStatus.SUCCEEDED
