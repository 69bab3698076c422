"""The local dead-letter trigger: a job whose message reached a DLQ is failed and announced,
through the stack's own dead-letter Lambda and an SQS event like the event source mapping's."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from infra.config import stage_config
from runtime.api.jobs import message_for
from runtime.common.jobs import CompletionEvent, ErrorCode, JobStatus, MediaRef
from runtime.common.names import BucketRole, EnvVar, Lane, ResourceNames
from runtime.common.records import JobRecord, job_pk
from runtime.local.emulator import LOCAL_CREDENTIALS
from runtime.local.resources import LOCAL_ACCOUNT, LOCAL_REGION, LocalResources, provision
from runtime.local.triggers import drain_dead_letters

NOW = "2026-01-01T00:00:00Z"


@pytest.fixture
def resources(
    session: Any, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalResources]:
    from runtime.api.entrypoints import dead_letters

    names = ResourceNames(stage="trig", account=LOCAL_ACCOUNT, region=LOCAL_REGION)
    created = provision(session, names=names, config=stage_config("dev"), endpoint_url=endpoint)
    for name, value in {
        **{str(k): v for k, v in created.runtime_env().items()},
        **LOCAL_CREDENTIALS,
        str(EnvVar.API_KEY_TENANTS): json.dumps({"key-id": "acme"}),
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    dead_letters._context.cache_clear()  # the handler reads its settings once per process
    yield created
    dead_letters._context.cache_clear()


def _job(resources: LocalResources, status: JobStatus) -> JobRecord:
    uploads = resources.buckets[BucketRole.UPLOADS]
    return JobRecord(
        job_id=f"job-{status.value.lower()}",
        tenant="acme",
        lane=Lane.INTERACTIVE,
        status=status,
        created_at=NOW,
        updated_at=NOW,
        correlation_id="corr-1",
        avatar_id="av-1",
        avatar=MediaRef(bucket=uploads, key="tenants/acme/uploads/u1/video"),
        audio=MediaRef(bucket=uploads, key="tenants/acme/uploads/u2/audio"),
    )


def test_a_dead_lettered_job_is_failed_announced_and_removed_from_the_dlq(
    resources: LocalResources, session: Any, endpoint: str
) -> None:
    from runtime.api.entrypoints import dead_letters

    # Given a job stuck RENDERING whose message exhausted its deliveries, a finished job whose
    # message was redriven late, an unreadable dead letter, and a subscriber on the topic
    sqs = session.client("sqs", endpoint_url=endpoint)
    table = session.resource("dynamodb", endpoint_url=endpoint).Table(resources.names.jobs_table)
    stuck, finished = _job(resources, JobStatus.RENDERING), _job(resources, JobStatus.SUCCEEDED)
    for record in (stuck, finished):
        table.put_item(Item=record.to_item())
    listener = sqs.create_queue(QueueName="trig-listener")["QueueUrl"]
    listener_arn = sqs.get_queue_attributes(QueueUrl=listener, AttributeNames=["QueueArn"])
    session.client("sns", endpoint_url=endpoint).subscribe(
        TopicArn=resources.completion_topic_arn,
        Protocol="sqs",
        Endpoint=listener_arn["Attributes"]["QueueArn"],
    )
    dlq = resources.dead_letter_queue_urls[Lane.INTERACTIVE]
    for body in (
        message_for(stuck).model_dump_json(),
        message_for(finished).model_dump_json(),
        "not a job message",
    ):
        sqs.send_message(QueueUrl=dlq, MessageBody=body)

    # When the local trigger polls the dead-letter queue
    handled = drain_dead_letters(sqs, dlq, dead_letters.lambda_handler, threading.Lock())

    # Then every letter is handled and gone
    assert handled == 3
    assert sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0).get("Messages") is None
    # And the stuck job failed with RETRIES_EXHAUSTED while the finished one kept its status
    failed = JobRecord.from_item(table.get_item(Key={"pk": job_pk(stuck.job_id)})["Item"])
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == ErrorCode.RETRIES_EXHAUSTED
    kept = JobRecord.from_item(table.get_item(Key={"pk": job_pk(finished.job_id)})["Item"])
    assert kept.status == JobStatus.SUCCEEDED
    # And exactly one completion event went out, for the failed job
    messages = sqs.receive_message(QueueUrl=listener, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    events = [
        CompletionEvent.model_validate_json(json.loads(m["Body"])["Message"])
        for m in messages["Messages"]
    ]
    assert [(e.job_id, e.type) for e in events] == [(stuck.job_id, "job.failed")]
