"""The webhook-deliveries Lambda's connection (standard library) goes to the address the check
judged, whatever DNS answers afterwards, with the host name kept for TLS and the Host header."""

from __future__ import annotations

import ssl

import pytest

from runtime.common.webhook_signing import WebhookTarget, check_target, pinned_connection
from tests.support.rebinding import CHECKED, HOST, rebinding_dns


def test_the_lambda_connection_goes_to_the_checked_address_not_a_rebound_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a name whose DNS answer changes right after the check
    with rebinding_dns(monkeypatch) as dns:
        # When the target is checked and then posted to over the pinned connection
        target = check_target(f"https://{HOST}:{dns.port}/hook?x=1", allow_private=False)
        connection = pinned_connection(target, timeout=5, tls=dns.tls.client)
        try:
            connection.request("POST", "/hook?x=1", body=b"{}")
            status = connection.getresponse().status
        finally:
            connection.close()

    # Then it reached the checked address, once, under its own name (SNI and Host)
    assert target.address == CHECKED
    assert status == 200
    assert [r.path for r in dns.receiver.requests] == ["/hook?x=1"]
    assert dns.trap.requests == []
    assert dns.lookups == [HOST]
    assert dns.tls.server_names == [HOST]
    assert dns.receiver.requests[0].headers["host"] == f"{HOST}:{dns.port}"


def test_the_lambda_connection_verifies_the_certificate_against_the_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a name served by a certificate for another name
    with rebinding_dns(monkeypatch) as dns:
        target = check_target(f"https://other.example.com:{dns.port}/hook", allow_private=False)
        connection = pinned_connection(target, timeout=5, tls=dns.tls.client)
        # Then the handshake fails before any request is sent
        with pytest.raises(ssl.SSLCertVerificationError):
            connection.request("POST", "/hook", body=b"{}")
        connection.close()
    assert dns.receiver.requests == []


@pytest.mark.parametrize(
    ("host", "port", "header"),
    [
        ("hooks.example.com", 443, "hooks.example.com"),
        ("hooks.example.com", 8443, "hooks.example.com:8443"),
        ("2001:db8::1", 443, "[2001:db8::1]"),
    ],
)
def test_the_host_header_names_the_port_only_when_it_is_not_the_default(
    host: str, port: int, header: str
) -> None:
    target = WebhookTarget(scheme="https", host=host, port=port, address="192.0.2.1")
    assert target.host_header == header
