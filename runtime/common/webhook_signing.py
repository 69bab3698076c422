"""Standard Webhooks signing (https://www.standardwebhooks.com) and the send-time target check,
shared by the worker (first delivery) and the webhook-deliveries Lambda (retries and
redeliveries), so both sign and refuse exactly alike. Standard library only (with
`runtime.common.webhook_targets`): it runs in the Lambda asset too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from runtime.common.jobs import CompletionEvent
from runtime.common.webhook_targets import WebhookTargetError, check_webhook_url, is_public_address

SECRET_PREFIX = "whsec_"  # noqa: S105  # nosec B105 (the format's prefix, not a secret)


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret. The prefix is optional: the stack generates
    48 letters and digits (valid base64), which receivers use as `whsec_<value>`."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise ValueError("webhook secret must be base64, optionally as whsec_<base64>") from None


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_id(event: CompletionEvent) -> str:
    """Stable across retries (receivers deduplicate on it), distinct per job outcome."""
    return f"msg_{event.job_id}_{event.status.value.lower()}"


class UnsafeWebhookTarget(WebhookTargetError):
    """The URL is not one we send to (the message says why, never the URL)."""


class UnresolvedWebhookHost(UnsafeWebhookTarget):
    """The host did not resolve now: unlike a refused target, a later attempt may succeed."""


def refused_detail(error: Exception) -> str:
    """The event-log detail of a delivery not sent: the policy's reason for a refused target
    (our own words, never the URL), else only the error's type."""
    if isinstance(error, UnsafeWebhookTarget):
        return f"refused target: {error}"
    return f"not sent: {type(error).__name__}"


@dataclass(frozen=True)
class WebhookTarget:
    """Where a URL that passed the check is sent, pinned to the address that was checked.
    Connect to `address` (never resolve `host` again: a rebinding DNS server could answer a
    private address the second time); send `host` as TLS SNI, for certificate verification and
    as the Host header."""

    scheme: str
    host: str
    port: int
    address: str

    @property
    def host_header(self) -> str:
        """`host[:port]` as the URL names it (IPv6 literals in brackets), the port only when it
        is not the scheme's default."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


def check_target(url: str, *, allow_private: bool) -> WebhookTarget:
    """The API's admission policy again (a record may predate it), then every address the host
    resolves to now must be public: no metadata service, no VPC neighbours. The answer is pinned
    to the first of those addresses, resolved once here."""
    if allow_private:  # local mode and tests: receivers on localhost
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise UnsafeWebhookTarget("webhook URL must be http(s) with a host")
        host = parts.hostname
    else:
        try:
            host = check_webhook_url(url)
        except WebhookTargetError as error:
            raise UnsafeWebhookTarget(str(error)) from error
        parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError) as error:
        raise UnresolvedWebhookHost("webhook host does not resolve") from error
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise UnresolvedWebhookHost("webhook host does not resolve")
    if not allow_private and not all(is_public_address(address) for address in addresses):
        raise UnsafeWebhookTarget("webhook host resolves to a non-public address")
    return WebhookTarget(scheme=parts.scheme, host=host, port=port, address=str(addresses[0]))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: WebhookTarget, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: WebhookTarget, timeout: float, tls: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=tls)
        self._address = target.address
        self._tls = tls

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def pinned_connection(
    target: WebhookTarget, *, timeout: float, tls: ssl.SSLContext | None = None
) -> http.client.HTTPConnection:
    """A standard-library connection to `target.address` that never resolves the name: the
    name is the TLS server name (SNI; the certificate must match it) and the Host header. For
    the Lambda, which has no httpx; the worker pins the same way with httpx. No redirects: a
    3xx is just a status."""
    if target.scheme == "https":
        return _PinnedHTTPSConnection(target, timeout, tls or ssl.create_default_context())
    return _PinnedHTTPConnection(target, timeout)
