"""Completion webhooks, signed per Standard Webhooks (https://www.standardwebhooks.com).

Headers `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">`; the key is the base64 part of the `whsec_...` secret kept in Secrets
Manager. Delivery runs on a small thread pool so a slow receiver never holds the GPU; each
delivery is retried with backoff, redirects are never followed (a 3xx is a failed attempt), and
the URL itself is never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx

from runtime.common.jobs import CompletionEvent
from runtime.worker.telemetry import logger

SECRET_PREFIX = "whsec_"  # noqa: S105  # nosec B105 (format prefix)


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


class SecretSource:
    """The signing secret from Secrets Manager, cached for `ttl_seconds` (rotation picks up)."""

    def __init__(self, secrets: Any, secret_arn: str, ttl_seconds: float = 300) -> None:
        self._secrets = secrets
        self._arn = secret_arn
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, bytes] | None = None

    def key(self) -> bytes:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._ttl:
                secret = self._secrets.get_secret_value(SecretId=self._arn)["SecretString"]
                self._cached = (now, signing_key(secret.strip()))
            return self._cached[1]


class WebhookSender:
    def __init__(
        self,
        key_source: Callable[[], bytes],
        *,
        allow_private: bool = False,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._key_source = key_source
        self._allow_private = allow_private
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._timeout = timeout_seconds
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook")
        self._stopping = threading.Event()

    def submit(self, url: str, event: CompletionEvent) -> Future[bool]:
        return self._pool.submit(self.deliver, url, event)

    def deliver(self, url: str, event: CompletionEvent) -> bool:
        """POST the event; True once a 2xx came back. Never raises."""
        try:
            check_target(url, allow_private=self._allow_private)
            key = self._key_source()
        except Exception as error:
            logger.warning("webhook not sent", extra={"job_id": event.job_id, "reason": str(error)})
            return False
        body = event.model_dump_json().encode()
        message_id = webhook_id(event)
        with httpx.Client(follow_redirects=False, timeout=self._timeout) as client:
            for attempt in range(1, self._attempts + 1):
                timestamp = int(time.time())
                headers = {
                    "content-type": "application/json",
                    "webhook-id": message_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign(key, message_id, timestamp, body),
                }
                status: int | None = None
                try:
                    status = client.post(url, content=body, headers=headers).status_code
                except httpx.HTTPError as error:
                    reason = type(error).__name__
                else:
                    if 200 <= status < 300:
                        return True
                    reason = f"HTTP {status}"
                logger.warning(
                    "webhook attempt failed",
                    extra={"job_id": event.job_id, "attempt": attempt, "reason": reason},
                )
                if attempt < self._attempts and self._stopping.wait(
                    self._backoff * 2 ** (attempt - 1)
                ):
                    break
        return False

    def close(self, timeout_seconds: float) -> None:
        """Let deliveries in flight finish within the timeout, then stop retrying."""
        waiter = threading.Thread(target=self._pool.shutdown, kwargs={"wait": True}, daemon=True)
        waiter.start()
        waiter.join(timeout_seconds)
        self._stopping.set()
