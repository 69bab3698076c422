"""Refused webhook targets on the redelivery path: the event log says why, a host that does not
resolve is retried by the queue; in local mode the API admits the local receivers its worker and
its redelivery path send to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runtime.api import idempotent_submit
from runtime.api.entrypoints import webhook_deliveries
from runtime.common.events import WebhookDelivery
from runtime.common.jobs import JobStatus
from runtime.common.names import EnvVar
from runtime.local.resources import LocalResources
from tests.integration.api.conftest import Call, Submit
from tests.integration.api.test_dead_letters import sqs_event
from tests.integration.api.test_webhook_redelivery import _events, _job
from tests.integration.api.test_webhook_redelivery import (
    signing_secret as signing_secret,  # the fixture
)
from tests.support.api_events import FakeLambdaContext
from tests.support.recorder import recorder


@pytest.fixture
def deployed_policy(signing_secret: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The deliveries Lambda as deployed: public https receivers only."""
    monkeypatch.setenv(EnvVar.WEBHOOK_ALLOW_PRIVATE.value, "false")
    webhook_deliveries._context.cache_clear()
    yield
    webhook_deliveries._context.cache_clear()


def test_a_refused_target_is_logged_with_the_reason_and_not_retried(
    deployment: LocalResources, deployed_policy: None
) -> None:
    with recorder() as receiver:
        # Given a finished job whose webhook points at this machine, under the deployed policy
        job_id = _job(deployment, status=JobStatus.SUCCEEDED, webhook_url=receiver.url + "/hook")
        body = WebhookDelivery(job_id=job_id, reason="redelivery").model_dump_json()
        # When the deliveries Lambda takes it
        result = webhook_deliveries.lambda_handler(sqs_event(body), FakeLambdaContext())
        # Then nothing reached the receiver, and the record is done (retrying cannot help)
        assert receiver.requests == []
    assert result == {"batchItemFailures": []}
    # And the event log records the refused target and why, without the URL
    (attempt,) = _events(deployment, job_id)
    assert (attempt.kind, attempt.delivered, attempt.http_status) == ("webhook", False, None)
    assert attempt.detail is not None
    assert attempt.detail.startswith("refused target: ")
    assert "https" in attempt.detail  # the policy's reason: https to a public host
    assert receiver.url not in attempt.detail


def test_a_host_that_does_not_resolve_is_retried_by_the_queue(
    deployment: LocalResources, deployed_policy: None
) -> None:
    # Given a job whose receiver's name does not resolve (now)
    job_id = _job(
        deployment, status=JobStatus.SUCCEEDED, webhook_url="https://hooks.example.invalid/x"
    )
    event = sqs_event(WebhookDelivery(job_id=job_id, reason="redelivery").model_dump_json())
    # When the deliveries Lambda takes it
    result = webhook_deliveries.lambda_handler(event, FakeLambdaContext())
    # Then the record fails, so SQS brings it back (then dead-letters it), and the log says why
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    (attempt,) = _events(deployment, job_id)
    assert attempt.detail == "refused target: webhook host does not resolve"


def test_local_mode_admits_a_receiver_on_this_machine(
    call_api: Call, submit_job: Submit, deployment: LocalResources, monkeypatch: Any
) -> None:
    # Given the API as local mode runs it (private receivers allowed, as for its worker)
    monkeypatch.setenv(EnvVar.WEBHOOK_ALLOW_PRIVATE.value, "true")
    idempotent_submit.runtime.cache_clear()
    try:
        # When a job names a receiver on this machine
        accepted = submit_job("local-hook", webhook_url="http://127.0.0.1:8080/hook")
        # Then it is accepted; a URL that is not http(s) still is not
        assert accepted["statusCode"] == 202, accepted["json"]
        refused = submit_job("local-ftp", webhook_url="ftp://127.0.0.1/hook")
        assert refused["statusCode"] == 400
        assert refused["json"]["error"]["field"] == "webhook_url"
    finally:
        monkeypatch.delenv(EnvVar.WEBHOOK_ALLOW_PRIVATE.value)
        idempotent_submit.runtime.cache_clear()
