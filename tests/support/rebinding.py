"""A DNS that answers one address to the check and another to every later lookup (rebinding),
with https receivers on both, so a test can tell which address a webhook connected to."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from runtime.common import webhook_signing
from tests.support.recorder import Recorder, recorder
from tests.support.tls import LocalTls, local_tls

HOST = "hooks.example.com"
CHECKED = "127.0.0.1"  # stands in for the public address the check saw
REBOUND = "127.0.0.2"  # stands in for 169.254.169.254 / a VPC address answered later


@dataclass
class Rebinding:
    tls: LocalTls
    receiver: Recorder  # listens on the checked address
    trap: Recorder  # same port on the address DNS answers after the check
    lookups: list[str]  # host names resolved (not literal addresses), in order

    @property
    def port(self) -> int:
        return int(urlsplit(self.receiver.url).port or 0)


@contextmanager
def rebinding_dns(
    monkeypatch: pytest.MonkeyPatch, statuses: list[int] | None = None
) -> Iterator[Rebinding]:
    """DNS answers CHECKED to the first lookup and REBOUND to every later one; only CHECKED is
    allowed as "public" (the test's allow-list seam), and both addresses serve valid TLS for
    HOST, so only the address connected to tells whether the connection was pinned."""
    tls = local_tls(HOST)
    lookups: list[str] = []

    def resolve(host: str, port: int, *_: object, **__: object) -> list[tuple[object, ...]]:
        try:
            address = str(ipaddress.ip_address(host))  # a literal address resolves to itself
        except ValueError:
            lookups.append(host)
            address = CHECKED if len(lookups) == 1 else REBOUND
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    with ExitStack() as stack:
        receiver = stack.enter_context(recorder(statuses, host=CHECKED, tls=tls.server))
        port = int(urlsplit(receiver.url).port or 0)
        trap = stack.enter_context(recorder(host=REBOUND, port=port, tls=tls.server))
        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        monkeypatch.setattr(
            webhook_signing,
            "is_public_address",
            lambda address: address == ipaddress.ip_address(CHECKED),
        )
        yield Rebinding(tls, receiver, trap, lookups)
