"""Completion webhooks, signed per Standard Webhooks (https://www.standardwebhooks.com).

Headers `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">`; the key is the secret kept in Secrets Manager (base64, with or
without `whsec_`; see `runtime.common.webhook_signing`). Delivery runs on a small thread pool so
a slow receiver never holds the GPU; each delivery is retried with backoff, redirects are never
followed (a 3xx is a failed attempt), and the URL itself is never logged.

The host is resolved once, by `check_target`, and every attempt connects to the address that was
checked: the request goes to the IP while the name stays the TLS server name (SNI and certificate
verification, httpx's `sni_hostname` extension) and the Host header. The HTTP client never
resolves the name itself, so a DNS answer that changes after the check (rebinding to the metadata
service or a VPC address) is never used. Proxy variables are ignored for the same reason.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx

from runtime.common.events import JobEvent, WebhookDelivery
from runtime.common.jobs import CompletionEvent
from runtime.common.webhook_signing import (
    UnresolvedWebhookHost,
    check_target,
    refused_detail,
    sign,
    signing_key,
    webhook_id,
)
from runtime.worker.telemetry import logger


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


# Called with the event being delivered and one attempt's record (for the job's event log).
AttemptRecorder = Callable[[CompletionEvent, JobEvent], None]


def attempt_event(
    *,
    attempt: int,
    http_status: int | None,
    latency_ms: float | None,
    delivered: bool,
    detail: str | None = None,
) -> JobEvent:
    """One webhook attempt for the log: status code and latency, never the URL or the body."""
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return JobEvent(
        at=at,
        kind="webhook",
        attempt=attempt,
        http_status=http_status,
        latency_ms=None if latency_ms is None else round(latency_ms, 1),
        delivered=delivered,
        detail=detail,
    )


class WebhookSender:
    def __init__(
        self,
        key_source: Callable[[], bytes],
        *,
        allow_private: bool = False,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 10.0,
        on_attempt: AttemptRecorder | None = None,
        on_gave_up: Callable[[CompletionEvent], None] | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """`tls_context`: the CAs receivers' certificates are verified against (default: the
        system's / certifi's); certificates are always verified against the URL's host name."""
        self._on_attempt = on_attempt
        self._on_gave_up = on_gave_up
        self._key_source = key_source
        self._allow_private = allow_private
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._timeout = timeout_seconds
        self._verify: ssl.SSLContext | bool = tls_context if tls_context is not None else True
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook")
        self._stopping = threading.Event()

    def submit(self, url: str, event: CompletionEvent) -> Future[bool]:
        return self._pool.submit(self.deliver, url, event)

    def deliver(self, url: str, event: CompletionEvent) -> bool:
        """POST the event; True once a 2xx came back. Never raises."""
        try:
            target = check_target(url, allow_private=self._allow_private)
            key = self._key_source()
        except Exception as error:
            logger.warning("webhook not sent", extra={"job_id": event.job_id, "reason": str(error)})
            refused = attempt_event(
                attempt=1,
                http_status=None,
                latency_ms=None,
                delivered=False,
                detail=refused_detail(error),
            )
            self._record(event, refused)
            if isinstance(error, UnresolvedWebhookHost):
                self._give_up(event)  # DNS may answer later: the deliveries queue retries
            return False
        body = event.model_dump_json().encode()
        message_id = webhook_id(event)
        pinned = httpx.URL(url).copy_with(host=target.address)
        with httpx.Client(
            follow_redirects=False, timeout=self._timeout, verify=self._verify, trust_env=False
        ) as client:
            for attempt in range(1, self._attempts + 1):
                timestamp = int(time.time())
                headers = {
                    "host": target.host_header,
                    "content-type": "application/json",
                    "webhook-id": message_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign(key, message_id, timestamp, body),
                }
                status: int | None = None
                started = time.monotonic()
                try:
                    status = client.post(
                        pinned,
                        content=body,
                        headers=headers,
                        extensions={"sni_hostname": target.host},
                    ).status_code
                except httpx.HTTPError as error:
                    reason = type(error).__name__
                else:
                    reason = f"HTTP {status}"
                delivered = status is not None and 200 <= status < 300
                self._record(
                    event,
                    attempt_event(
                        attempt=attempt,
                        http_status=status,
                        latency_ms=(time.monotonic() - started) * 1000,
                        delivered=delivered,
                        detail=None if status is not None else reason,
                    ),
                )
                if delivered:
                    return True
                logger.warning(
                    "webhook attempt failed",
                    extra={"job_id": event.job_id, "attempt": attempt, "reason": reason},
                )
                if attempt < self._attempts and self._stopping.wait(
                    self._backoff * 2 ** (attempt - 1)
                ):
                    break
        self._give_up(event)
        return False

    def _give_up(self, event: CompletionEvent) -> None:
        """Retries here are spent (or the task is stopping): hand the delivery on, so the
        webhook-deliveries Lambda keeps trying and dead-letters it if it never gets through."""
        if self._on_gave_up is None:
            return
        try:
            self._on_gave_up(event)
        except Exception:
            logger.exception("could not hand the webhook on", extra={"job_id": event.job_id})

    def _record(self, event: CompletionEvent, attempt: JobEvent) -> None:
        if self._on_attempt is None:
            return
        try:
            self._on_attempt(event, attempt)
        except Exception:
            logger.warning("could not record the webhook attempt", extra={"job_id": event.job_id})

    def close(self, timeout_seconds: float) -> None:
        """Let deliveries in flight finish within the timeout, then stop retrying."""
        waiter = threading.Thread(target=self._pool.shutdown, kwargs={"wait": True}, daemon=True)
        waiter.start()
        waiter.join(timeout_seconds)
        self._stopping.set()


def hand_on_webhook(sqs: Any, queue_url: str, event: CompletionEvent) -> None:
    """Queue the job's delivery for the webhook-deliveries Lambda (the job id only)."""
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=WebhookDelivery(job_id=event.job_id, reason="worker_gave_up").model_dump_json(),
    )
