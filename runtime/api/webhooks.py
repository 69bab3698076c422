"""Webhook URL admission: https to a public host only, decided without any DNS lookup.

The worker POSTs completion events to this URL from inside our VPC, so a URL naming a private,
loopback, link-local or metadata address would let a caller probe our network (SSRF). Literal IPs
in every notation `inet_aton` accepts (127.1, 0x7f.1, 2130706433) and well-known internal names are
refused here; hostnames are not resolved (a handler must not do DNS on caller input) — the worker
re-checks the resolved address at send time.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from runtime.api.errors import ApiError, invalid

_FIELD = "webhook_url"
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_BLOCKED_NAMES = frozenset(
    {"localhost", "metadata", "metadata.google.internal", "instance-data", "ip6-localhost"}
)
_BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")


def check_webhook_url(url: str) -> None:
    """Raise a 400 naming `webhook_url` unless it is an https URL to a public host."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise invalid(_FIELD, "webhook_url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise invalid(_FIELD, "webhook_url is not a valid URL") from error
    if parts.scheme != "https":
        raise invalid(_FIELD, "webhook_url must use https")
    if parts.username is not None or parts.password is not None:
        raise invalid(_FIELD, "webhook_url must not carry credentials")
    if port == 0:
        raise invalid(_FIELD, "webhook_url has an invalid port")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise invalid(_FIELD, "webhook_url needs a host")
    _check_host(host)


def _check_host(host: str) -> None:
    address = _literal_address(host)
    if address is not None:
        if not address.is_global or address.is_multicast:
            raise _not_public()
        return
    if not all(_LABEL.fullmatch(label) for label in host.split(".")) or "." not in host:
        raise invalid(_FIELD, "webhook_url host must be a public DNS name or address")
    if host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES):
        raise _not_public()
    if host.split(".")[-1].isdigit():
        # Looks like an IP in some notation inet_aton rejected (e.g. 1.2.3.4.5): not a hostname.
        raise invalid(_FIELD, "webhook_url host is not a valid address")


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address
    if re.fullmatch(r"[0-9a-fx.]+", host) and not re.search(r"[g-wyz]", host):
        try:
            # Parses only numbers (decimal, octal, hex, short forms); never touches DNS.
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _not_public() -> ApiError:
    return invalid(
        _FIELD, "webhook_url must point to a public host (no private or local addresses)"
    )
