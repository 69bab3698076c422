"""Jobs whose messages exhausted their deliveries are FAILED and announced, exactly once, and
lose their render segments and preview playlist at once (a job already final keeps its files)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runtime.api.entrypoints import dead_letters
from runtime.api.jobs import derive_job_id
from runtime.common.keys import (
    job_segments_prefix,
    output_key,
    preview_playlist_key,
    segment_key,
)
from runtime.common.names import BucketRole, Lane
from runtime.local.resources import LocalResources
from tests.integration.api.conftest import Call, Events, Upload, queue_messages, submit_body
from tests.support.api_events import FakeLambdaContext


@pytest.fixture(autouse=True)
def fresh_context(deployment: LocalResources) -> Iterator[None]:
    dead_letters._context.cache_clear()
    yield
    dead_letters._context.cache_clear()


@pytest.fixture
def queued_job(
    call_api: Call,
    upload: Upload,
    short_wav: bytes,
    face_png: bytes,
    deployment: LocalResources,
    aws: Any,
) -> dict[str, Any]:
    """A job accepted by the API; returns its queue message as SQS delivered it."""
    body = submit_body(upload("audio", short_wav), avatar_upload_id=upload("image", face_png))
    call_api("POST", "/v1/jobs", body=body, headers={"Idempotency-Key": "dlq"})
    (message,) = queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE])
    return {"job_id": derive_job_id("tenant-a", "dlq"), "body": message["Body"]}


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "handle",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:musetalk-test-dlq",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


def _mark_succeeded(aws: Any, deployment: LocalResources, job_id: str) -> None:
    """The job finished just as its message reached the dead-letter queue."""
    aws("dynamodb").update_item(
        TableName=deployment.names.jobs_table,
        Key={"pk": {"S": f"JOB#{job_id}"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "SUCCEEDED"}},
    )


def _status(call_api: Call, job_id: str) -> dict[str, Any]:
    return dict(call_api("GET", f"/v1/jobs/{job_id}")["json"])


def test_an_exhausted_job_is_failed_and_announced_with_filterable_attributes(
    call_api: Call, queued_job: dict[str, Any], completion_events: Events
) -> None:
    response = dead_letters.lambda_handler(sqs_event(queued_job["body"]), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    status = _status(call_api, queued_job["job_id"])
    assert status["status"] == "FAILED"
    assert status["error"]["code"] == "RETRIES_EXHAUSTED"
    (published,) = completion_events()
    assert published["attributes"] == {"status": "FAILED", "tenant": "tenant-a"}
    assert published["event"]["type"] == "job.failed"
    assert published["event"]["job_id"] == queued_job["job_id"]
    assert published["event"]["error"]["code"] == "RETRIES_EXHAUSTED"


def test_a_job_that_already_finished_keeps_its_status_and_nothing_is_published(
    call_api: Call,
    queued_job: dict[str, Any],
    completion_events: Events,
    deployment: LocalResources,
    aws: Any,
) -> None:
    _mark_succeeded(aws, deployment, queued_job["job_id"])
    response = dead_letters.lambda_handler(sqs_event(queued_job["body"]), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    assert _status(call_api, queued_job["job_id"])["status"] == "SUCCEEDED"
    assert completion_events() == []


@pytest.mark.parametrize(("worker_published", "expected_events"), [(True, 0), (False, 1)])
def test_a_job_the_worker_failed_on_its_last_receive_is_announced_once(
    queued_job: dict[str, Any],
    completion_events: Events,
    deployment: LocalResources,
    aws: Any,
    worker_published: bool,
    expected_events: int,
) -> None:
    """Given the worker marked the job FAILED itself (and did or did not get its event out),
    when the message reaches the DLQ, then the failure is announced exactly once overall."""
    aws("dynamodb").update_item(
        TableName=deployment.names.jobs_table,
        Key={"pk": {"S": f"JOB#{queued_job['job_id']}"}},
        UpdateExpression="SET #s = :s, #e = :e, completion_pending = :pending",
        ExpressionAttributeNames={"#s": "status", "#e": "error"},
        ExpressionAttributeValues={
            ":s": {"S": "FAILED"},
            ":e": {"M": {"code": {"S": "RETRIES_EXHAUSTED"}, "message": {"S": "gave up"}}},
            ":pending": {"BOOL": not worker_published},
        },
    )
    response = dead_letters.lambda_handler(sqs_event(queued_job["body"]), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    assert len(completion_events()) == expected_events


def test_a_failed_publish_fails_only_that_record_and_the_redelivery_publishes_once(
    call_api: Call,
    queued_job: dict[str, Any],
    completion_events: Events,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sns = dead_letters._context().sns
    real_publish = sns.publish
    attempts: list[int] = []

    def flaky_publish(**kwargs: Any) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "Publish")
        return real_publish(**kwargs)

    monkeypatch.setattr(sns, "publish", flaky_publish)
    unreadable = "not a job message"
    event = sqs_event(queued_job["body"], unreadable)
    # When the first delivery's publish fails
    first = dead_letters.lambda_handler(event, FakeLambdaContext())
    # Then only the job's record is reported failed (the unreadable one is dropped, not retried)
    assert first == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert _status(call_api, queued_job["job_id"])["status"] == "FAILED"
    assert completion_events() == []
    # When SQS redelivers it, twice
    again = sqs_event(queued_job["body"])
    assert dead_letters.lambda_handler(again, FakeLambdaContext()) == {"batchItemFailures": []}
    assert dead_letters.lambda_handler(again, FakeLambdaContext()) == {"batchItemFailures": []}
    # Then the failure was announced exactly once
    assert [e["event"]["job_id"] for e in completion_events()] == [queued_job["job_id"]]


def test_cancelling_announces_the_cancellation(
    call_api: Call, queued_job: dict[str, Any], completion_events: Events
) -> None:
    call_api("DELETE", f"/v1/jobs/{queued_job['job_id']}")
    call_api("DELETE", f"/v1/jobs/{queued_job['job_id']}")
    (published,) = completion_events()
    assert published["attributes"] == {"status": "CANCELLED", "tenant": "tenant-a"}
    assert published["event"]["type"] == "job.cancelled"


def _render_files(aws: Any, deployment: LocalResources, job_id: str, segments: int) -> list[str]:
    """Upload `segments` segments and the playlist of `job_id`, as a crashed render left them,
    and record all but the last as done (the last was uploaded as the worker died)."""
    s3, bucket = aws("s3"), deployment.buckets[BucketRole.OUTPUTS]
    keys = [segment_key("tenant-a", job_id, index) for index in range(segments)]
    keys.append(preview_playlist_key("tenant-a", job_id))
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"ts")
    aws("dynamodb").update_item(
        TableName=deployment.names.jobs_table,
        Key={"pk": {"S": f"JOB#{job_id}"}},
        UpdateExpression="SET segments_done = :done, segment_frames = :size",
        ExpressionAttributeValues={":done": {"N": str(segments - 1)}, ":size": {"N": "50"}},
    )
    return sorted(keys)


def _listed(aws: Any, deployment: LocalResources, prefix: str) -> list[str]:
    s3, bucket = aws("s3"), deployment.buckets[BucketRole.OUTPUTS]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_an_exhausted_job_loses_its_segments_and_playlist_and_nothing_else(
    call_api: Call, queued_job: dict[str, Any], deployment: LocalResources, aws: Any
) -> None:
    # Given a job whose crashed attempts left three segments (one unrecorded) and a playlist,
    # next to another object of the job and another job's segment
    job_id = queued_job["job_id"]
    _render_files(aws, deployment, job_id, segments=3)
    s3, bucket = aws("s3"), deployment.buckets[BucketRole.OUTPUTS]
    neighbours = sorted([output_key("tenant-a", job_id), segment_key("tenant-a", "other-job", 0)])
    for key in neighbours:
        s3.put_object(Bucket=bucket, Key=key, Body=b"kept")
    # When its message reaches the dead-letter handler
    response = dead_letters.lambda_handler(sqs_event(queued_job["body"]), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    # Then it is FAILED and none of its render files are left; the other objects are
    assert _status(call_api, job_id)["status"] == "FAILED"
    assert _listed(aws, deployment, job_segments_prefix("tenant-a", job_id)) == []
    assert _listed(aws, deployment, "tenants/tenant-a/") == neighbours


def test_a_job_already_final_keeps_its_segments(
    call_api: Call, queued_job: dict[str, Any], deployment: LocalResources, aws: Any
) -> None:
    # Given a job that SUCCEEDED (its preview plays on) just as its message was dead-lettered
    job_id = queued_job["job_id"]
    keys = _render_files(aws, deployment, job_id, segments=2)
    _mark_succeeded(aws, deployment, job_id)
    # When the dead letter is handled
    response = dead_letters.lambda_handler(sqs_event(queued_job["body"]), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    # Then the job and its files are as they were
    assert _status(call_api, job_id)["status"] == "SUCCEEDED"
    assert _listed(aws, deployment, job_segments_prefix("tenant-a", job_id)) == keys
