"""Webhooks are signed per Standard Webhooks, retried, never redirected, never sent inside."""

from __future__ import annotations

import base64
import socket
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from runtime.common.jobs import CompletionEvent
from runtime.common.webhook_signing import UnsafeWebhookTarget
from runtime.local.resources import webhook_signing_secret
from runtime.worker.webhooks import (
    WebhookSender,
    check_target,
    signing_key,
)
from tests.support.completion_events import succeeded_event
from tests.support.recorder import recorder

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def _sender(**kwargs: Any) -> WebhookSender:
    return WebhookSender(
        lambda: signing_key(SECRET), allow_private=True, backoff_seconds=0.01, **kwargs
    )


def test_the_delivered_webhook_verifies_with_the_reference_library() -> None:
    # Given a receiver
    with recorder() as receiver:
        # When the event is delivered
        delivered = _sender().deliver(receiver.url + "/hook", succeeded_event())

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
        delivered = _sender().deliver(receiver.url, succeeded_event())

    # Then the third attempt succeeded and every attempt carried the same webhook-id
    assert delivered
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_a_redirect_is_a_failed_attempt_and_is_not_followed() -> None:
    # Given a receiver that always redirects
    with recorder(statuses=[302, 302, 302, 302]) as receiver:
        delivered = _sender().deliver(receiver.url + "/hook", succeeded_event())

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


def test_a_secret_that_is_not_base64_is_refused() -> None:
    for secret in ("whsec_not base64!", "token-urlsafe_but-not-base64"):
        with pytest.raises(ValueError, match="whsec_"):
            signing_key(secret)


def test_a_secret_as_the_stack_generates_it_signs_what_receivers_verify_as_whsec() -> None:
    # Given a secret shaped as Secrets Manager generates it for the stack: 48 letters and digits
    stored = webhook_signing_secret()
    assert len(stored) == 48
    assert stored.isalnum()
    # When the worker signs with it as stored
    with recorder() as receiver:
        sender = WebhookSender(lambda: signing_key(stored), allow_private=True)
        assert sender.deliver(receiver.url + "/hook", succeeded_event())
    # Then a receiver given `whsec_<stored>` verifies the delivery
    (request,) = receiver.requests
    assert Webhook("whsec_" + stored).verify(request.body, request.headers)["job_id"] == "job-1"


@pytest.mark.parametrize(
    ("resolved", "refused"),
    [
        ("10.0.0.5", True),
        ("::ffff:169.254.169.254", True),
        ("ff0e::1", True),
        ("93.184.216.34", False),
    ],
)
def test_a_public_name_is_judged_by_the_addresses_it_resolves_to_now(
    resolved: str, refused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a name that passed the API's admission but now resolves to `resolved`
    def resolve(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        assert host == "hooks.example.com"
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (resolved, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    # When the worker checks it at send time
    # Then it is refused exactly when that address is not public
    if refused:
        with pytest.raises(UnsafeWebhookTarget, match="non-public"):
            check_target("https://hooks.example.com/hook", allow_private=False)
    else:
        check_target("https://hooks.example.com/hook", allow_private=False)


def test_the_worker_applies_the_api_admission_policy_before_resolving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("an internal name must be refused before any DNS lookup")

    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    for url in ("https://metadata.google.internal/x", "https://user:pw@hooks.example.com/x"):
        with pytest.raises(UnsafeWebhookTarget, match="webhook_url"):
            check_target(url, allow_private=False)


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
        delivered = sender.deliver(receiver.url, succeeded_event())
    # Then it was not, each attempt was recorded, and the delivery was handed on once
    assert delivered is False
    assert attempts == [(500, False), (503, False)]
    assert [event.job_id for event in handed_on] == [succeeded_event().job_id]


def test_a_delivered_event_is_not_handed_on() -> None:
    handed_on: list[CompletionEvent] = []
    with recorder(statuses=[500, 200]) as receiver:
        sender = _sender(attempts=2, on_gave_up=handed_on.append)
        assert sender.deliver(receiver.url, succeeded_event()) is True
    assert handed_on == []
