"""Standard Webhooks signing (https://www.standardwebhooks.com) and the send-time target check,
shared by the worker (first delivery) and the webhook-deliveries Lambda (retries and
redeliveries), so both sign and refuse exactly alike. Standard library only (with
`runtime.common.webhook_targets`): it runs in the Lambda asset too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
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
    pass


def check_target(url: str, *, allow_private: bool) -> None:
    """The API's admission policy again (a record may predate it), then every address the host
    resolves to now must be public: no metadata service, no VPC neighbours."""
    if allow_private:  # local mode and tests: receivers on localhost
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise UnsafeWebhookTarget("webhook URL must be http(s) with a host")
        return
    try:
        host = check_webhook_url(url)
    except WebhookTargetError as error:
        raise UnsafeWebhookTarget(str(error)) from error
    for info in socket.getaddrinfo(host, urlsplit(url).port or 443, proto=socket.IPPROTO_TCP):
        if not is_public_address(ipaddress.ip_address(info[4][0])):
            raise UnsafeWebhookTarget("webhook host resolves to a non-public address")
