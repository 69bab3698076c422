"""Every failure mode ends in a defined state: rendered, handed back, or FAILED with a code."""

from __future__ import annotations

import json

import boto3

from runtime.common.jobs import ErrorCode, JobStatus
from runtime.common.limits import DEFAULT_LIMITS, LaneLimits, Limits
from runtime.common.metrics import Metric
from runtime.common.names import EnvVar, Lane
from runtime.worker.job_runner import Outcome
from runtime.worker.job_store import JobStore
from tests.integration.worker.conftest import MakeWorker, ended
from tests.support.small_engine import SmallEngine
from tests.support.waiting import eventually
from tests.support.worker_world import WorkerWorld


def test_injected_oom_halves_the_batch_and_still_succeeds(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given an engine whose batches above 4 run out of memory (default batch 16, floor 4)
    message = world.submit()
    engine = SmallEngine(oom_above=4)
    worker = make_worker(engine)

    # When the job runs
    outcome = worker.run_once()

    # Then it halved twice (16 -> 8 -> 4), counted each halving, and succeeded at 4
    assert outcome is Outcome.SUCCEEDED
    assert worker.metrics.count(Metric.OOM_HALVINGS) == 2
    assert set(engine.batch_sizes) == {4}
    assert world.record(message.job_id).status is JobStatus.SUCCEEDED


def test_oom_below_the_floor_hands_back_with_a_smaller_batch_for_the_next_attempt(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given an engine that only fits batches of 1 and a halving floor of 4 on first attempts
    message = world.submit()
    worker = make_worker(SmallEngine(oom_above=1), **{EnvVar.MIN_BATCH_SIZE: "4"})

    # When the first attempt runs
    first = worker.run_once()

    # Then the job went back to QUEUED with batch size 2 recorded and the message visible again
    assert first is Outcome.REQUEUED
    record = world.record(message.job_id)
    assert (record.status, record.batch_size_hint, record.attempt) == (JobStatus.QUEUED, 2, 1)
    assert worker.metrics.count(Metric.JOBS_REQUEUED) == 1

    # And the next attempt starts at 2, may go down to 1, and succeeds
    second = worker.run_once()
    assert second is Outcome.SUCCEEDED
    record = world.record(message.job_id)
    assert (record.status, record.attempt) == (JobStatus.SUCCEEDED, 2)


def test_invalid_media_fails_at_once_with_its_code(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job whose audio is not audio
    message = world.submit(audio=world.upload("tenant-a", b"not a wav file" * 100, "audio"))
    engine = SmallEngine()
    worker = make_worker(engine)

    # When it runs once
    outcome = worker.run_once()

    # Then it is FAILED with INVALID_MEDIA, not retried, and the caller is told
    assert outcome is Outcome.FAILED
    assert ended(world, message.job_id) == (JobStatus.FAILED, ErrorCode.INVALID_MEDIA)
    assert engine.speak_calls == 0
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0
    (envelope,) = world.events()
    assert json.loads(envelope["Message"])["error"]["code"] == "INVALID_MEDIA"
    assert envelope["MessageAttributes"]["status"]["Value"] == "FAILED"


def test_audio_longer_than_the_lane_limit_fails_before_any_render(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given an interactive lane limited to 2 s of audio and an 8 s job
    tight = Limits(
        lanes={
            **DEFAULT_LIMITS.lanes,
            Lane.INTERACTIVE: LaneLimits(
                max_audio_seconds=2,
                max_audio_bytes=10**8,
                max_video_bytes=10**8,
                max_image_bytes=10**8,
            ),
        }
    )
    message = world.submit()
    engine = SmallEngine()
    worker = make_worker(engine, **{EnvVar.LIMITS_JSON: tight.model_dump_json()})

    # When it runs
    worker.run_once()

    # Then it failed with AUDIO_TOO_LONG without preparing or rendering
    record = world.record(message.job_id)
    assert record.error is not None
    assert record.error.code is ErrorCode.AUDIO_TOO_LONG
    assert (engine.prepare_calls, engine.speak_calls) == (0, 0)


def test_a_transient_poison_job_is_retried_then_failed_and_dead_lettered(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job that fails transiently every time (queue maxReceiveCount = 2)
    message = world.submit()
    worker = make_worker(SmallEngine(transient_failures=99))

    # When the first delivery fails it goes back to QUEUED for a retry
    assert worker.run_once() is Outcome.RETRY
    assert world.record(message.job_id).status is JobStatus.QUEUED

    # And the last delivery marks the job FAILED with the reason
    assert eventually(worker.run_once, timeout=10, what="second delivery") is Outcome.FAILED
    assert ended(world, message.job_id) == (JobStatus.FAILED, ErrorCode.RETRIES_EXHAUSTED)
    record = world.record(message.job_id)
    assert "TransientFailure" in record.error.message

    # Then the message itself ends in the lane's dead-letter queue
    def dead_lettered() -> bool:
        worker.run_once()
        return world.messages_in(world.dlq_urls[Lane.INTERACTIVE]) == 1

    eventually(dead_lettered, timeout=10, what="the message in the DLQ")
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0


def test_an_unreadable_message_is_never_deleted_and_reaches_the_dlq(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a message that is not a job message
    world.sqs.send_message(QueueUrl=world.queue_urls[Lane.BATCH], MessageBody='{"nope": 1}')
    worker = make_worker()

    # When workers keep polling
    def dead_lettered() -> bool:
        worker.run_once()
        return world.messages_in(world.dlq_urls[Lane.BATCH]) == 1

    # Then the redrive policy moves it to the DLQ, where an operator can look at it
    eventually(dead_lettered, timeout=10, what="the message in the DLQ")


def test_a_redelivered_message_of_a_live_lease_is_deferred_not_deleted(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job another (live) worker holds, whose message became visible again
    message = world.submit()
    queue = world.queue_urls[Lane.INTERACTIVE]
    received = world.sqs.receive_message(QueueUrl=queue)["Messages"][0]
    store = JobStore(boto3.resource("dynamodb").Table(world.names.jobs_table))
    assert store.acquire(
        message.job_id, owner="other", message_id=received["MessageId"], lease_seconds=60
    )
    world.sqs.change_message_visibility(
        QueueUrl=queue, ReceiptHandle=received["ReceiptHandle"], VisibilityTimeout=0
    )
    engine = SmallEngine()
    worker = make_worker(engine)

    # When this worker receives it
    outcome = worker.run_once()

    # Then it neither renders nor deletes (that would delete the holder's message)
    assert outcome is Outcome.DEFERRED
    assert engine.speak_calls == 0
    assert world.messages_in(queue) == 1
    assert world.record(message.job_id).lease_owner == "other"


def test_an_expired_lease_of_a_dead_worker_is_taken_over(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job whose worker died mid-render (its lease already expired)
    message = world.submit()
    store = JobStore(boto3.resource("dynamodb").Table(world.names.jobs_table))
    assert store.acquire(message.job_id, owner="dead", message_id="m-old", lease_seconds=-1)

    # When the message comes back to a live worker
    outcome = make_worker().run_once()

    # Then it takes the job over as the second attempt and finishes it
    assert outcome is Outcome.SUCCEEDED
    record = world.record(message.job_id)
    assert (record.status, record.attempt) == (JobStatus.SUCCEEDED, 2)


def test_inputs_outside_the_job_tenants_prefix_are_refused(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job of tenant-b that names tenant-a's upload
    foreign = world.upload("tenant-a", b"RIFF....", "audio")
    message = world.submit(tenant="tenant-b", audio=foreign)
    engine = SmallEngine()

    # When it runs
    make_worker(engine).run_once()

    # Then nothing of tenant-a was read into tenant-b's job
    record = world.record(message.job_id)
    assert record.error is not None
    assert record.error.code is ErrorCode.INPUT_NOT_FOUND
    assert "tenant prefix" in record.error.message
    assert engine.prepare_calls == 0


def test_oom_on_the_last_receive_fails_instead_of_handing_back(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job on its last allowed delivery (max receive count 1) that OOMs at the floor
    message = world.submit()
    worker = make_worker(
        SmallEngine(oom_above=1),
        **{EnvVar.MIN_BATCH_SIZE: "4", EnvVar.MAX_RECEIVE_COUNT: "1"},
    )

    # When it runs
    outcome = worker.run_once()

    # Then it fails with OUT_OF_MEMORY rather than going back to a queue it cannot come back from
    assert outcome is Outcome.FAILED
    record = world.record(message.job_id)
    assert record.error is not None
    assert record.error.code is ErrorCode.OUT_OF_MEMORY
