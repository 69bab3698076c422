"""The job's event log as the worker writes it: each status change with the write that makes it,
and each webhook attempt with its HTTP status and latency (never the URL or the payload)."""

from __future__ import annotations

import json

import boto3

from runtime.common.events import events_of
from runtime.common.jobs import JobStatus
from runtime.common.names import JobsTable
from runtime.worker.job_runner import Outcome
from tests.integration.worker.conftest import MakeWorker
from tests.support.recorder import recorder
from tests.support.small_engine import SmallEngine
from tests.support.waiting import eventually
from tests.support.worker_world import WorkerWorld


def _item(world: WorkerWorld, job_id: str) -> dict[str, object]:
    table = boto3.resource("dynamodb").Table(world.names.jobs_table)
    item = table.get_item(Key={JobsTable.PARTITION_KEY: f"JOB#{job_id}"}, ConsistentRead=True)
    return dict(item["Item"])


def test_status_changes_and_every_webhook_attempt_are_logged_without_the_url(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    with recorder(statuses=[503, 204]) as receiver:
        # Given a job with a webhook whose receiver fails once, then accepts
        url = receiver.url + "/hooks/secret-path-token"
        message = world.submit(webhook_url=url)
        worker = make_worker()

        # When the worker renders it and the webhook is retried
        assert worker.run_once() is Outcome.SUCCEEDED
        eventually(
            lambda: (
                len([e for e in events_of(_item(world, message.job_id)) if e.kind == "webhook"])
                == 2
            ),
            timeout=15,
            what="both webhook attempts in the log",
        )

    # Then the log holds the status changes in order, then both attempts
    events = events_of(_item(world, message.job_id))
    statuses = [e.status for e in events if e.kind == "status"]
    assert statuses == [JobStatus.PREPARING, JobStatus.RENDERING, JobStatus.SUCCEEDED]
    attempts = [e for e in events if e.kind == "webhook"]
    assert [(a.attempt, a.http_status, a.delivered) for a in attempts] == [
        (1, 503, False),
        (2, 204, True),
    ]
    assert all(a.latency_ms is not None and a.latency_ms >= 0 for a in attempts)
    assert [e.at for e in events] == sorted(e.at for e in events)
    # And nothing in it names the URL or carries the payload
    logged = json.dumps([e.model_dump(mode="json") for e in events])
    assert "secret-path-token" not in logged
    assert "127.0.0.1" not in logged
    assert message.job_id not in logged


def test_a_handed_back_job_logs_its_return_to_the_queue(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job whose first render fails transiently
    message = world.submit()
    worker = make_worker(SmallEngine(transient_failures=1))

    # When the worker runs it once
    assert worker.run_once() is Outcome.RETRY

    # Then the log shows it went back to QUEUED with the reason
    events = events_of(_item(world, message.job_id))
    assert [(e.status, e.detail) for e in events][-1] == (JobStatus.QUEUED, "handed back")
    # And it is back in its lane's queue-position index
    assert world.record(message.job_id).queued_lane == "interactive"
