"""POST /v1/jobs/{id}/webhook/redeliver and the webhook-deliveries Lambda: the final event is
sent again, signed, each attempt logged; a failed attempt goes back to the queue (whose DLQ the
stack alarms on); jobs with nothing to send are refused with the reason."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from standardwebhooks.webhooks import Webhook

from runtime.api.entrypoints import webhook_deliveries
from runtime.common.events import WebhookDelivery, events_of
from runtime.common.jobs import JobStatus, MediaRef
from runtime.common.names import EnvVar, JobsTable, Lane
from runtime.common.records import JobRecord
from runtime.local.resources import LocalResources, webhook_signing_secret
from tests.integration.api.conftest import Call, queue_messages
from tests.integration.api.test_dead_letters import sqs_event
from tests.support.api_events import FakeLambdaContext
from tests.support.recorder import recorder

SECRET = "whsec_" + base64.b64encode(b"redelivery-test-key-0123456789ab").decode()


@pytest.fixture(params=["whsec_form", "as_the_stack_generates_it"])
def signing_secret(
    request: pytest.FixtureRequest,
    deployment: LocalResources,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The Lambda's secret in both stored forms; yields it as receivers use it (`whsec_...`)."""
    stored = SECRET if request.param == "whsec_form" else webhook_signing_secret()
    arn = aws("secretsmanager").create_secret(Name=f"whsec-{uuid.uuid4().hex}", SecretString=stored)
    monkeypatch.setenv(EnvVar.WEBHOOK_SECRET_ARN.value, arn["ARN"])
    # The emulator's receiver is a local http server; deployed stages never set this.
    monkeypatch.setenv(EnvVar.WEBHOOK_ALLOW_PRIVATE.value, "true")
    webhook_deliveries._context.cache_clear()
    yield "whsec_" + stored.removeprefix("whsec_")
    webhook_deliveries._context.cache_clear()


def _table(deployment: LocalResources) -> Any:
    return boto3.resource("dynamodb", endpoint_url=deployment.endpoint_url).Table(
        deployment.names.jobs_table
    )


def _job(
    deployment: LocalResources,
    *,
    status: JobStatus,
    webhook_url: str | None,
    tenant: str = "tenant-a",
) -> str:
    """A job record as the worker leaves it."""
    job_id = "job_" + uuid.uuid4().hex
    ref = MediaRef(bucket="b", key=f"tenants/{tenant}/uploads/u/file")
    record = JobRecord(
        job_id=job_id,
        tenant=tenant,
        lane=Lane.INTERACTIVE,
        status=status,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:01:00.000Z",
        correlation_id="corr-1",
        avatar_id="av",
        avatar=ref,
        audio=ref,
        webhook_url=webhook_url,
    )
    _table(deployment).put_item(Item=record.to_item())
    return job_id


def _events(deployment: LocalResources, job_id: str) -> list[Any]:
    item = _table(deployment).get_item(Key={JobsTable.PARTITION_KEY: f"JOB#{job_id}"})["Item"]
    return events_of(item)


def test_a_redelivery_sends_the_final_event_again_signed_and_logs_the_attempt(
    call_api: Call, deployment: LocalResources, aws: Any, signing_secret: str
) -> None:
    with recorder() as receiver:
        # Given a finished job with a webhook
        job_id = _job(deployment, status=JobStatus.SUCCEEDED, webhook_url=receiver.url + "/hook")

        # When its owner asks for a redelivery and the deliveries Lambda takes the message
        response = call_api("POST", f"/v1/jobs/{job_id}/webhook/redeliver")
        assert response["statusCode"] == 202, response["json"]
        assert response["json"] == {"job_id": job_id, "event_type": "job.succeeded"}
        (message,) = queue_messages(aws("sqs"), deployment.webhook_queue_url)
        assert WebhookDelivery.model_validate_json(message["Body"]).reason == "redelivery"
        assert receiver.url not in message["Body"]
        result = webhook_deliveries.lambda_handler(sqs_event(message["Body"]), FakeLambdaContext())

    # Then the receiver got the final event, verifiable with the signing secret
    assert result == {"batchItemFailures": []}
    (request,) = receiver.requests
    payload = Webhook(signing_secret).verify(request.body, request.headers)
    assert payload["job_id"] == job_id
    assert payload["status"] == "SUCCEEDED"
    assert request.headers["webhook-id"] == f"msg_{job_id}_succeeded"  # same id as the original
    # And the log shows the request and the delivered attempt, without the URL
    events = _events(deployment, job_id)
    assert [e.kind for e in events] == ["webhook.redelivery_requested", "webhook"]
    assert (events[1].http_status, events[1].delivered) == (200, True)
    assert receiver.url not in json.dumps([e.model_dump(mode="json") for e in events])


def test_a_failed_attempt_fails_only_its_record_so_the_queue_retries_it(
    deployment: LocalResources, signing_secret: str
) -> None:
    with recorder(statuses=[502]) as receiver:
        # Given a delivery whose receiver answers 502
        job_id = _job(deployment, status=JobStatus.FAILED, webhook_url=receiver.url)
        body = WebhookDelivery(job_id=job_id, reason="worker_gave_up").model_dump_json()
        event = sqs_event(body)

        # When the Lambda handles it
        result = webhook_deliveries.lambda_handler(event, FakeLambdaContext())

    # Then the record is reported failed (SQS redelivers it, then dead-letters it)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    (attempt,) = _events(deployment, job_id)
    assert (attempt.kind, attempt.http_status, attempt.delivered) == ("webhook", 502, False)


@pytest.mark.parametrize(
    ("status", "webhook", "code"),
    [
        (JobStatus.RENDERING, True, "JOB_NOT_FINAL"),
        (JobStatus.SUCCEEDED, False, "NO_WEBHOOK"),
    ],
)
def test_nothing_to_redeliver_is_a_409_with_the_reason(
    call_api: Call, deployment: LocalResources, status: JobStatus, webhook: bool, code: str
) -> None:
    # Given a job that is not final, or has no webhook
    job_id = _job(
        deployment, status=status, webhook_url="https://hooks.example.com/x" if webhook else None
    )
    # When a redelivery is requested, Then it is refused naming why
    response = call_api("POST", f"/v1/jobs/{job_id}/webhook/redeliver")
    assert response["statusCode"] == 409
    assert response["json"]["error"]["code"] == code


def test_another_tenants_job_cannot_be_redelivered(
    call_api: Call, deployment: LocalResources
) -> None:
    job_id = _job(
        deployment,
        status=JobStatus.SUCCEEDED,
        webhook_url="https://hooks.example.com/x",
        tenant="tenant-b",
    )
    response = call_api("POST", f"/v1/jobs/{job_id}/webhook/redeliver")
    assert response["statusCode"] == 404
