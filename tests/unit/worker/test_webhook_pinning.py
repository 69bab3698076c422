"""The webhook goes to the address that was checked, whatever DNS answers afterwards (rebinding),
with the host name kept for TLS (SNI, certificate verification) and the Host header."""

from __future__ import annotations

import pytest

from runtime.worker.webhooks import WebhookSender
from tests.support.completion_events import succeeded_event
from tests.support.rebinding import HOST, rebinding_dns

KEY = b"k" * 32  # the HMAC key; its value does not matter here


def test_a_rebinding_answer_after_the_check_is_never_connected_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a name whose DNS answer changes to another address right after the check,
    # and a receiver that fails the first attempt (so the delivery connects twice)
    with rebinding_dns(monkeypatch, statuses=[503]) as dns:
        sender = WebhookSender(
            lambda: KEY, attempts=2, backoff_seconds=0.01, tls_context=dns.tls.client
        )
        # When the worker delivers to https://HOST:port/hook
        delivered = sender.deliver(f"https://{HOST}:{dns.port}/hook", succeeded_event())

    # Then both attempts went to the checked address and none to the rebound one
    assert delivered
    assert [r.path for r in dns.receiver.requests] == ["/hook", "/hook"]
    assert dns.trap.requests == []
    # And the name was resolved once, by the check, never again by the HTTP client
    assert dns.lookups == [HOST]
    # And the receiver saw its own name: as TLS server name and in the Host header
    assert set(dns.tls.server_names) == {HOST}
    assert {r.headers["host"] for r in dns.receiver.requests} == {f"{HOST}:{dns.port}"}


def test_the_certificate_is_verified_against_the_host_name_not_the_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a name that resolves to a server whose certificate is for another name
    with rebinding_dns(monkeypatch) as dns:
        attempts: list[str | None] = []
        sender = WebhookSender(
            lambda: KEY,
            attempts=1,
            tls_context=dns.tls.client,
            on_attempt=lambda _, attempt: attempts.append(attempt.detail),
        )
        # When the worker delivers to it
        delivered = sender.deliver(f"https://other.example.com:{dns.port}/hook", succeeded_event())

    # Then the TLS handshake fails (the certificate does not name other.example.com): no request
    assert not delivered
    assert dns.receiver.requests == []
    assert dns.trap.requests == []
    assert attempts == ["ConnectError"]
    assert dns.tls.server_names == ["other.example.com"]


def test_a_name_that_does_not_resolve_is_refused_without_a_request() -> None:
    # Given a name under the reserved .invalid domain (never resolves)
    sender = WebhookSender(lambda: KEY, attempts=1)
    # Then it is not sent
    assert not sender.deliver("https://hooks.example.invalid/hook", succeeded_event())
