"""`cancel_after` at the API: validated with the field named, turned into an absolute deadline
that the queue message carries and the status shows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from runtime.common.jobs import CANCEL_AFTER_MAX, JobMessage
from runtime.common.names import Lane
from runtime.local.resources import LocalResources
from tests.integration.api.conftest import Call, Submit, queue_messages, submit_body


def test_cancel_after_becomes_a_deadline_on_the_message_and_the_status(
    call_api: Call, submit_job: Submit, deployment: LocalResources, aws: Any
) -> None:
    # Given uploaded media
    before = datetime.now().astimezone()

    # When a job is submitted with cancel_after=600
    response = submit_job("deadline-1", cancel_after=600)

    # Then the status shows a deadline ten minutes after submission
    assert response["statusCode"] == 202, response["json"]
    job_id = response["json"]["job_id"]
    status = call_api("GET", f"/v1/jobs/{job_id}")["json"]
    deadline = datetime.fromisoformat(status["deadline_at"])
    assert timedelta(seconds=590) < deadline - before < timedelta(seconds=610)
    # And the queue message carries the same deadline to the worker
    (message,) = queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE])
    assert JobMessage.model_validate_json(message["Body"]).deadline_at == status["deadline_at"]


@pytest.mark.parametrize("value", [0, -5, CANCEL_AFTER_MAX + 1, "600", 1.5])
def test_an_out_of_range_or_non_integer_cancel_after_is_a_400_naming_the_field(
    call_api: Call, value: Any
) -> None:
    # When a job is submitted with a bad cancel_after
    response = call_api(
        "POST",
        "/v1/jobs",
        body=submit_body("audio-1", avatar_id="avatar-1", cancel_after=value),
        headers={"Idempotency-Key": f"bad-deadline-{value}"},
    )
    # Then it is rejected before anything is looked up, naming the field
    assert response["statusCode"] == 400, response["json"]
    assert response["json"]["error"]["field"] == "cancel_after"
