"""Webhooks are signed per Standard Webhooks, retried, never redirected, never sent inside."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from runtime.common.jobs import CompletionEvent, JobStatus
from runtime.common.names import Lane
from runtime.common.webhook_signing import UnsafeWebhookTarget
from runtime.worker.webhooks import (
    WebhookSender,
    check_target,
    signing_key,
)
from tests.worker_support.recorder import recorder

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def _event() -> CompletionEvent:
    return CompletionEvent(
        type="job.succeeded",
        job_id="job-1",
        tenant="tenant-a",
        status=JobStatus.SUCCEEDED,
        lane=Lane.INTERACTIVE,
        correlation_id="corr-1",
        finished_at="2026-01-01T00:00:00.000Z",
    )


def _sender(**kwargs: Any) -> WebhookSender:
    return WebhookSender(
        lambda: signing_key(SECRET), allow_private=True, backoff_seconds=0.01, **kwargs
    )


def test_the_delivered_webhook_verifies_with_the_reference_library() -> None:
    # Given a receiver
    with recorder() as receiver:
        # When the event is delivered
        delivered = _sender().deliver(receiver.url + "/hook", _event())

    # Then the reference verifier accepts its signature and the body is the event
    assert delivered
    (request,) = receiver.requests
    payload = Webhook(SECRET).verify(request.body, request.headers)
    assert payload["job_id"] == "job-1"
    assert request.headers["webhook-id"] == "msg_job-1_succeeded"
    # And a tampered body does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(request.body.replace(b"job-1", b"job-2"), request.headers)


def test_failed_attempts_are_retried_with_the_same_id() -> None:
    # Given a receiver that fails twice
    with recorder(statuses=[503, 500]) as receiver:
        delivered = _sender().deliver(receiver.url, _event())

    # Then the third attempt succeeded and every attempt carried the same webhook-id
    assert delivered
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_a_redirect_is_a_failed_attempt_and_is_not_followed() -> None:
    # Given a receiver that always redirects
    with recorder(statuses=[302, 302, 302, 302]) as receiver:
        delivered = _sender().deliver(receiver.url + "/hook", _event())

    # Then no attempt succeeded and the redirect target was never requested
    assert not delivered
    assert [r.path for r in receiver.requests] == ["/hook"] * 4


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # not https
        "https://127.0.0.1/hook",  # loopback
        "https://169.254.169.254/latest/meta-data",  # instance metadata
        "https://10.0.0.5/hook",  # VPC neighbour
        "file:///etc/passwd",
    ],
)
def test_targets_inside_or_insecure_are_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhookTarget):
        check_target(url, allow_private=False)


def test_a_secret_without_the_whsec_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        signing_key("c2VjcmV0")


def test_a_delivery_that_exhausts_its_attempts_is_handed_on_and_every_attempt_recorded() -> None:
    handed_on: list[CompletionEvent] = []
    attempts: list[tuple[int | None, bool | None]] = []
    with recorder(statuses=[500, 503]) as receiver:
        # Given a receiver that fails both attempts
        sender = _sender(
            attempts=2,
            on_attempt=lambda _, attempt: attempts.append((attempt.http_status, attempt.delivered)),
            on_gave_up=handed_on.append,
        )
        # When the event is delivered
        delivered = sender.deliver(receiver.url, _event())
    # Then it was not, each attempt was recorded, and the delivery was handed on once
    assert delivered is False
    assert attempts == [(500, False), (503, False)]
    assert [event.job_id for event in handed_on] == [_event().job_id]


def test_a_delivered_event_is_not_handed_on() -> None:
    handed_on: list[CompletionEvent] = []
    with recorder(statuses=[500, 200]) as receiver:
        sender = _sender(attempts=2, on_gave_up=handed_on.append)
        assert sender.deliver(receiver.url, _event()) is True
    assert handed_on == []
