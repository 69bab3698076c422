"""Webhook URLs: https to public hosts only, decided without DNS."""

from __future__ import annotations

import socket

import pytest

from runtime.api.errors import ApiError
from runtime.api.webhooks import check_webhook_url


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/musetalk",
        "https://hooks.example.com:8443/x?token=abc",
        "https://93.184.216.34/x",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/x",
        "https://cafe.be/x",  # hex-looking letters, still a hostname
    ],
)
def test_public_https_urls_are_accepted(url: str) -> None:
    check_webhook_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://127.1/x",
        "https://2130706433/x",
        "https://0x7f000001/x",
        "https://017700000001/x",
        "https://0/x",
        "https://10.1.2.3/x",
        "https://172.16.0.1/x",
        "https://192.168.1.1/x",
        "https://100.64.0.1/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/x",
        "https://[fe80::1]/x",
        "https://[fd00::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[::ffff:169.254.169.254]/x",
        # IPv6 forms embedding an IPv4 address (relayed or translated to it)
        "https://[::127.0.0.1]/x",  # IPv4-compatible (::/96)
        "https://[::a9fe:a9fe]/x",  # the same, hex: 169.254.169.254
        "https://[64:ff9b::a9fe:a9fe]/x",  # NAT64 well-known prefix
        "https://[64:ff9b:1::a00:1]/x",  # NAT64 local use
        "https://[2002:a9fe:a9fe::1]/x",  # 6to4
        "https://[2002:808:808::1]/x",  # 6to4 of a public address: still relayed
        "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",  # Teredo
        "https://[::ffff:0:a00:1]/x",  # IPv4-translated
        "https://224.0.0.1/x",
        "https://localhost/x",
        "https://api.localhost/x",
        "https://metadata.google.internal/x",
        "https://printer.local/x",
        "https://intranet/x",
        "https://user:secret@hooks.example.com/x",  # pragma: allowlist secret
        "https://hooks.example.com:0/x",
        "https://hooks.example.com:99999/x",
        "https://exa mple.com/x",
        "https://bücher.example/x",
        "https://1.2.3.4.5/x",
        "https://hooks.example.com/\r\nHost: evil",
        "https:///x",
    ],
)
def test_private_local_and_malformed_urls_are_refused_naming_the_field(url: str) -> None:
    with pytest.raises(ApiError) as refused:
        check_webhook_url(url)
    assert refused.value.status == 400
    assert refused.value.field == "webhook_url"


def test_no_dns_lookup_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("the handler must not resolve caller-named hosts")

    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    monkeypatch.setattr(socket, "gethostbyname", forbidden)
    check_webhook_url("https://hooks.example.com/x")
    with pytest.raises(ApiError):
        check_webhook_url("https://localhost/x")
