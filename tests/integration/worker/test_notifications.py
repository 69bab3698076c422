"""Completion reaches the caller: SNS always, the signed webhook when the job has one."""

from __future__ import annotations

import json

import boto3
from standardwebhooks.webhooks import Webhook

from runtime.common.jobs import ErrorCode, JobError, JobStatus, StageTimings
from runtime.common.names import Lane
from runtime.worker.job_runner import Outcome
from runtime.worker.job_store import JobStore
from tests.integration.worker.conftest import MakeWorker
from tests.support.recorder import recorder
from tests.support.waiting import eventually
from tests.support.worker_world import WorkerWorld


def test_a_job_with_a_webhook_url_gets_the_event_signed_with_the_managed_secret(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    with recorder() as receiver:
        # Given a job whose record carries a webhook URL (the message does not)
        message = world.submit(webhook_url=receiver.url + "/hooks/musetalk")
        worker = make_worker()

        # When it renders
        assert worker.run_once() is Outcome.SUCCEEDED

        # Then the receiver got the completion event, verifiable with the Secrets Manager secret
        eventually(lambda: receiver.requests, timeout=10, what="the webhook POST")
    (request,) = receiver.requests
    assert request.path == "/hooks/musetalk"
    payload = Webhook(world.webhook_secret).verify(request.body, request.headers)
    assert payload["job_id"] == message.job_id
    assert payload["status"] == "SUCCEEDED"
    assert "webhook_url" not in message.model_dump_json()


def test_a_final_job_whose_event_was_never_sent_is_announced_on_redelivery(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a worker that failed the job and died before publishing the event
    message = world.submit()
    store = JobStore(boto3.resource("dynamodb").Table(world.names.jobs_table))
    acquired = store.acquire(message.job_id, owner="dead", message_id="m", lease_seconds=60)
    assert acquired is not None
    store.fail(acquired[0], JobError(code=ErrorCode.NO_FACE, message="no face"), StageTimings())

    # When its message is delivered again
    outcome = make_worker().run_once()

    # Then the event is published once, the message is dropped, and nothing is re-rendered
    assert outcome is Outcome.DROPPED
    (envelope,) = world.events()
    assert json.loads(envelope["Message"])["error"]["code"] == "NO_FACE"
    record = world.record(message.job_id)
    assert record.status is JobStatus.FAILED
    assert record.completion_pending is False
    assert world.messages_in(world.queue_urls[Lane.INTERACTIVE]) == 0


def test_a_job_cancelled_by_the_api_before_it_ran_is_dropped_without_a_second_event(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a queued job the API cancelled (the API publishes that event itself)
    message = world.submit()
    world.table.update_item(
        Key={"pk": f"JOB#{message.job_id}"},
        UpdateExpression="SET #s = :cancelled",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":cancelled": JobStatus.CANCELLED.value},
    )

    # When its message reaches a worker
    outcome = make_worker().run_once()

    # Then the message is dropped, nothing renders and no event is published by the worker
    assert outcome is Outcome.DROPPED
    assert world.events() == []
    assert world.record(message.job_id).status is JobStatus.CANCELLED
