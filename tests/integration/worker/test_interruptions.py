"""A spot interruption is not a failure: handing a job back must not use up its deliveries, so a job
reclaimed more often than the queue's maxReceiveCount still succeeds (docs/deploy.md, spot)."""

from __future__ import annotations

from runtime.common.jobs import JobStatus
from runtime.common.names import EnvVar, Lane
from runtime.worker.job_runner import Outcome
from tests.integration.worker.conftest import MakeWorker
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import WorkerWorld


def _receive_count(world: WorkerWorld) -> int:
    """The ApproximateReceiveCount the next delivery of the job's message would carry, minus one
    (peeked with visibility 0, so the message stays available)."""
    (message,) = world.sqs.receive_message(
        QueueUrl=world.queue_urls[Lane.INTERACTIVE],
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
        VisibilityTimeout=0,
        MaxNumberOfMessages=1,
    )["Messages"]
    return int(message["Attributes"]["ApproximateReceiveCount"]) - 1


def test_a_job_interrupted_more_often_than_max_receive_count_still_succeeds(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job, and workers whose tasks are told to stop mid-render (the spot notice) with no
    # time left to finish, more times than the lane's max receive count (3)
    message = world.submit()
    interruptions = 5
    for _ in range(interruptions):
        engine = SmallEngine()
        worker = make_worker(engine, **{EnvVar.STOP_TIMEOUT_SECONDS: "0"})
        engine.after_batch = lambda done, worker=worker: worker.stop.request() if done else None
        # When it renders and is interrupted
        assert worker.run_once() is Outcome.INTERRUPTED
        # Then the job is queued again on a message that has never been received
        assert world.record(message.job_id).status is JobStatus.QUEUED
        assert _receive_count(world) == 0

    # When a worker that is not interrupted takes it
    assert make_worker().run_once() is Outcome.SUCCEEDED

    # Then it succeeds, with every interruption recorded as an attempt, and nothing dead-lettered
    record = world.record(message.job_id)
    assert record.status is JobStatus.SUCCEEDED
    assert record.attempt == interruptions + 1
    assert world.messages_in(world.dlq_urls[Lane.INTERACTIVE]) == 0


def test_a_message_received_after_sigterm_goes_back_unused(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a queued job and a worker told to stop just as its poll returns a message
    message = world.submit()
    worker = make_worker()
    worker.stop.request()

    # When it polls
    assert worker.run_once() is None

    # Then the job is still queued, on a message that has never been received
    assert world.record(message.job_id).status is JobStatus.QUEUED
    assert _receive_count(world) == 0
