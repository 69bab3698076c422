"""A job that ends while a worker holds it, or after an attempt left segments: a caller's cancel
is logged as a cancel (not a lost lease) and its message deleted at once; cancelled, expired and
failed jobs leave no segments or playlist behind."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runtime.api.cancellation import cancel_reason
from runtime.common.jobs import ErrorCode, JobStatus
from runtime.common.keys import job_segments_prefix
from runtime.common.names import BucketRole, EnvVar, JobsTable
from runtime.common.records import job_pk
from runtime.engine.engine_contract import ProgressFn, Rendered
from runtime.worker import deadlines
from runtime.worker.job_runner import Outcome
from runtime.worker.job_store import iso, utc_now
from runtime.worker.telemetry import logger as worker_logger
from tests.integration.worker.conftest import MakeWorker, ended
from tests.support.log_lines import captured_log_lines
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import WorkerWorld

SEGMENTED = {EnvVar.SEGMENT_FRAMES: "50"}  # yongen.wav is 200 frames: 4 segments


@pytest.fixture
def worker_log_lines() -> Iterator[io.StringIO]:
    with captured_log_lines(worker_logger.service) as sink:
        yield sink


class CallerCancels(SmallEngine):
    """The caller cancels the job through the API's write once `at_frame` frames are done."""

    def __init__(self, world: WorkerWorld, at_frame: int) -> None:
        super().__init__(default_batch_size=8)
        self._world, self._at = world, at_frame
        self.job_id = ""

    def speak(self, *args: Any, progress: ProgressFn | None = None, **kwargs: Any) -> Rendered:
        def cancelling(done: int, total: int) -> None:
            if done >= self._at and self.job_id:
                reason = cancel_reason("tenant-a", "API key key-a")
                self._world.table.update_item(
                    Key={JobsTable.PARTITION_KEY: job_pk(self.job_id)},
                    UpdateExpression="SET #status = :cancelled, #error = :error",
                    ExpressionAttributeNames={"#status": "status", "#error": "error"},
                    ExpressionAttributeValues={
                        ":cancelled": JobStatus.CANCELLED.value,
                        ":error": reason.model_dump(mode="json"),
                    },
                )
                self.job_id = ""
            if progress is not None:
                progress(done, total)

        return super().speak(*args, progress=cancelling, **kwargs)


def render_files(world: WorkerWorld, tenant: str, job_id: str) -> list[str]:
    listing = world.s3.list_objects_v2(
        Bucket=world.bucket(BucketRole.OUTPUTS), Prefix=job_segments_prefix(tenant, job_id)
    )
    return [item["Key"] for item in listing.get("Contents", [])]


def test_a_callers_cancel_is_logged_as_a_cancel_and_its_message_deleted_at_once(
    world: WorkerWorld, make_worker: MakeWorker, worker_log_lines: io.StringIO
) -> None:
    # Given a job its caller cancels after 120 of its 200 frames (two segments uploaded)
    message = world.submit()
    engine = CallerCancels(world, at_frame=120)
    engine.job_id = message.job_id
    worker = make_worker(engine, **SEGMENTED, **{EnvVar.HEARTBEAT_SECONDS: "0.2"})

    # When the worker runs it
    outcome = worker.run_once()

    # Then it stopped and says the job was cancelled, by whom, not that a lease was lost
    assert outcome is Outcome.CANCELLED
    assert ended(world, message.job_id) == (JobStatus.CANCELLED, ErrorCode.CANCELLED_BY_CALLER)
    lines = [json.loads(line) for line in worker_log_lines.getvalue().splitlines()]
    messages = [line["message"] for line in lines]
    assert "lease lost to another worker; stopped without writing" not in messages
    (cancelled,) = [line for line in lines if line["message"].startswith("job cancelled")]
    assert cancelled["error_code"] == "CANCELLED_BY_CALLER"
    assert "API key key-a" in cancelled["reason"]
    # And the message is gone now, not back later to be dropped as a duplicate
    assert world.messages_in(world.queue_urls[message.lane]) == 0
    # And no segment or playlist is left behind
    assert render_files(world, message.tenant, message.job_id) == []


class ClockJumps(SmallEngine):
    """Moves the worker's deadline clock two hours ahead at `at_frame` (no sleeping)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at_frame: int) -> None:
        super().__init__(default_batch_size=8)
        self._at = at_frame
        self._offset = timedelta(0)
        monkeypatch.setattr(deadlines, "now", lambda: utc_now() + self._offset)

    def speak(self, *args: Any, progress: ProgressFn | None = None, **kwargs: Any) -> Rendered:
        def jumping(done: int, total: int) -> None:
            if done >= self._at:
                self._offset = timedelta(hours=2)
            if progress is not None:
                progress(done, total)

        return super().speak(*args, progress=jumping, **kwargs)


def test_a_job_cancelled_at_its_deadline_leaves_no_segments(
    world: WorkerWorld, make_worker: MakeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job whose deadline passes after two of its segments are uploaded
    message = world.submit(deadline_at=iso(utc_now() + timedelta(hours=1)))
    worker = make_worker(ClockJumps(monkeypatch, at_frame=120), **SEGMENTED)
    # When the worker runs it
    assert worker.run_once() is Outcome.CANCELLED
    # Then it is cancelled at the deadline, and its segments and playlist are gone
    assert ended(world, message.job_id) == (JobStatus.CANCELLED, ErrorCode.DEADLINE_EXCEEDED)
    assert world.record(message.job_id).segments_done
    assert render_files(world, message.tenant, message.job_id) == []


def test_a_handed_back_job_that_expires_leaves_no_segments(
    world: WorkerWorld, make_worker: MakeWorker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a job handed back (SIGTERM) after two segments, whose deadline then passes
    message = world.submit(deadline_at=iso(utc_now() + timedelta(hours=1)))
    engine = SmallEngine(default_batch_size=8)
    first = make_worker(engine, **SEGMENTED, **{EnvVar.STOP_TIMEOUT_SECONDS: "0"})
    engine.after_batch = lambda done: first.stop.request() if done >= 110 else None
    assert first.run_once() is Outcome.INTERRUPTED
    assert render_files(world, message.tenant, message.job_id)
    monkeypatch.setattr(deadlines, "now", lambda: utc_now() + timedelta(hours=2))
    # When the next worker receives it
    assert make_worker(SmallEngine(), **SEGMENTED).run_once() is Outcome.EXPIRED
    # Then it expired and left nothing of the earlier attempt behind
    assert ended(world, message.job_id) == (JobStatus.EXPIRED, ErrorCode.DEADLINE_EXCEEDED)
    assert render_files(world, message.tenant, message.job_id) == []


def test_a_job_that_fails_after_uploading_segments_leaves_none_behind(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job whose render crashes after two of its segments are uploaded, on its last
    # allowed delivery
    message = world.submit()
    engine = SmallEngine(default_batch_size=8)
    engine.fail_at_frame = 110
    worker = make_worker(engine, **SEGMENTED, **{EnvVar.MAX_RECEIVE_COUNT: "1"})
    # When the worker runs it
    assert worker.run_once() is Outcome.FAILED
    # Then it failed with its segments recorded, and neither they nor the playlist remain
    assert ended(world, message.job_id) == (JobStatus.FAILED, ErrorCode.RETRIES_EXHAUSTED)
    assert world.record(message.job_id).segments_done
    assert render_files(world, message.tenant, message.job_id) == []
