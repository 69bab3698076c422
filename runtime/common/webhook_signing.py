"""Standard Webhooks signing (https://www.standardwebhooks.com) and the target check, shared by
the worker (first delivery) and the webhook-deliveries Lambda (retries and redeliveries), so both
sign and refuse exactly alike. Standard library only: it runs in the Lambda asset too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
from urllib.parse import urlsplit

from runtime.common.jobs import CompletionEvent

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)


def signing_key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secret must have the form whsec_<base64>")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_id(event: CompletionEvent) -> str:
    """Stable across retries (receivers deduplicate on it), distinct per job outcome."""
    return f"msg_{event.job_id}_{event.status.value.lower()}"


class UnsafeWebhookTarget(ValueError):
    pass


def check_target(url: str, *, allow_private: bool) -> None:
    """https only, to public addresses only (no metadata service, no VPC neighbours)."""
    parts = urlsplit(url)
    if allow_private:
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise UnsafeWebhookTarget("webhook URL must be http(s) with a host")
        return
    if parts.scheme != "https" or not parts.hostname:
        raise UnsafeWebhookTarget("webhook URL must be https with a host")
    for info in socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP):
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise UnsafeWebhookTarget("webhook host resolves to a non-public address")
