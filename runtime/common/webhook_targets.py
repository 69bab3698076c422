"""Which webhook URLs we send to: https to a public host only (SSRF guard), one policy for both
the API (admission, no DNS) and the worker (again at send time, on the resolved addresses).

The worker POSTs completion events from inside our VPC, so a URL naming a private, loopback,
link-local or metadata address would let a caller probe our network. Literal IPs in every notation
`inet_aton` accepts (127.1, 0x7f.1, 2130706433) and well-known internal names are refused by
`check_webhook_url` without resolving anything (a handler must not do DNS on caller input); the
worker then checks every address the name resolves to with `is_public_address`, which catches a
public name pointing inside.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_BLOCKED_NAMES = frozenset(
    {"localhost", "metadata", "metadata.google.internal", "instance-data", "ip6-localhost"}
)
_BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
NOT_PUBLIC = "webhook_url must point to a public host (no private or local addresses)"


class WebhookTargetError(ValueError):
    """The URL is not one we send to; the message says why, naming `webhook_url`."""


def check_webhook_url(url: str) -> str:
    """The URL's host, or `WebhookTargetError` unless it is an https URL to a public host."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise WebhookTargetError("webhook_url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WebhookTargetError("webhook_url is not a valid URL") from error
    if parts.scheme != "https":
        raise WebhookTargetError("webhook_url must use https")
    if parts.username is not None or parts.password is not None:
        raise WebhookTargetError("webhook_url must not carry credentials")
    if port == 0:
        raise WebhookTargetError("webhook_url has an invalid port")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookTargetError("webhook_url needs a host")
    _check_host(host)
    return host


# IPv6 forms that carry an IPv4 address to a relay or translator, which then reaches that IPv4
# address (a private one too): IPv4-compatible, IPv4-translated, NAT64 (well-known and local
# use), 6to4 and Teredo. Python's `is_global` calls some of them global; we never send to them.
_EMBEDDING_IPV4 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",
        "::ffff:0:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001::/32",
    )
)


def is_public_address(address: IpAddress) -> bool:
    """Globally routable unicast; an IPv4-mapped IPv6 address is judged as its IPv4 address,
    and the other IPv6 forms that embed an IPv4 address are refused."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif any(address in network for network in _EMBEDDING_IPV4):
            return False
    return address.is_global and not address.is_multicast


def _check_host(host: str) -> None:
    address = _literal_address(host)
    if address is not None:
        if not is_public_address(address):
            raise WebhookTargetError(NOT_PUBLIC)
        return
    if not all(_LABEL.fullmatch(label) for label in host.split(".")) or "." not in host:
        raise WebhookTargetError("webhook_url host must be a public DNS name or address")
    if host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES):
        raise WebhookTargetError(NOT_PUBLIC)
    if host.split(".")[-1].isdigit():
        # Looks like an IP in some notation inet_aton rejected (e.g. 1.2.3.4.5): not a hostname.
        raise WebhookTargetError("webhook_url host is not a valid address")


def _literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fx.]+", host) and not re.search(r"[g-wyz]", host):
        try:
            # Parses only numbers (decimal, octal, hex, short forms); never touches DNS.
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None
