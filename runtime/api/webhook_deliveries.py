"""Webhook redelivery: the API's `POST /v1/jobs/{id}/webhook/redeliver`, and the delivery on the
webhook deliveries queue (entry point `entrypoints.webhook_deliveries`) that sends a job's final
event, signed, one attempt per receive.

The queue is fed by the redeliver route and by the worker when its own retries gave up. A failed
attempt fails the SQS record (partial batch response), so the queue's visibility timeout is the
backoff; after `WEBHOOK_MAX_RECEIVES` receives the message moves to the webhook dead-letter queue,
whose alarm tells an operator. Every attempt lands in the job's event log (status code, latency;
never the URL or the body). The Lambda runs outside any VPC, so it reaches public receivers only
through the same https-and-public-address check the worker applies.
"""

from __future__ import annotations

import http.client
import time
from http import HTTPStatus
from urllib.parse import urlsplit

from runtime.api.context import ApiContext, iso
from runtime.api.errors import ApiError, ApiErrorCode
from runtime.api.jobs import owned_job
from runtime.api.models import WebhookRedeliveryQueued
from runtime.api.observability import logger, tracer
from runtime.common.completion import completion_event
from runtime.common.events import JobEvent, WebhookDelivery
from runtime.common.records import JobRecord
from runtime.common.webhook_signing import (
    UnresolvedWebhookHost,
    check_target,
    pinned_connection,
    refused_detail,
    sign,
    webhook_id,
)

TIMEOUT_SECONDS = 10.0
# A whole failed batch is reported item by item too: each message keeps its own receive count.


class WebhookNotDelivered(Exception):
    """This receive's attempt failed; SQS brings the message back after its visibility timeout."""


def request_redelivery(ctx: ApiContext, tenant: str, job_id: str) -> WebhookRedeliveryQueued:
    """Log the request and enqueue it. Only a final job with a webhook has an event to resend."""
    if ctx.settings.webhook_queue_url is None:
        raise ApiError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            ApiErrorCode.DEPENDENCY_UNAVAILABLE,
            "webhook redelivery is not deployed in this stage",
        )
    record = owned_job(ctx, tenant, job_id)
    if not record.status.is_final:
        raise ApiError(
            HTTPStatus.CONFLICT,
            ApiErrorCode.JOB_NOT_FINAL,
            f"the job is {record.status.value}; its final event does not exist yet",
            field="job_id",
        )
    if not record.webhook_url:
        raise ApiError(
            HTTPStatus.CONFLICT,
            ApiErrorCode.NO_WEBHOOK,
            "the job has no webhook_url (none was given, or the job was purged)",
            field="job_id",
        )
    requested = JobEvent(at=iso(ctx.now()), kind="webhook.redelivery_requested")
    if not ctx.table.append_event(job_id, requested):
        raise ApiError(
            HTTPStatus.CONFLICT,
            ApiErrorCode.EVENT_LOG_FULL,
            "the job's event log is full; no more redeliveries can be recorded",
            field="job_id",
        )
    ctx.sqs.send_message(
        QueueUrl=ctx.settings.webhook_queue_url,
        MessageBody=WebhookDelivery(job_id=job_id, reason="redelivery").model_dump_json(),
    )
    logger.info("webhook redelivery queued", extra={"job_id": job_id})
    return WebhookRedeliveryQueued(job_id=job_id, event_type=completion_event(record).type)


@tracer.capture_method(capture_response=False)
def deliver(ctx: ApiContext, key: bytes, delivery: WebhookDelivery, attempt: int) -> bool:
    """One signed POST of the job's final event; False when there is nothing to send (no job,
    not final, no webhook: dropped). Raises WebhookNotDelivered for a failed attempt."""
    item = ctx.table.job_item(delivery.job_id)
    record = JobRecord.from_item(item) if item else None
    if record is None or not record.status.is_final or not record.webhook_url:
        logger.warning("webhook delivery has nothing to send", extra={"job_id": delivery.job_id})
        return False
    event = completion_event(record)
    url = record.webhook_url
    try:
        target = check_target(url, allow_private=ctx.settings.webhook_allow_private)
    except Exception as error:
        _log_attempt(ctx, delivery.job_id, attempt, None, None, refused_detail(error))
        if isinstance(error, UnresolvedWebhookHost):
            raise WebhookNotDelivered(str(error)) from error  # DNS may answer on a retry
        logger.warning(
            "webhook target refused", extra={"job_id": delivery.job_id, "reason": str(error)}
        )
        return False  # retrying cannot make a refused target acceptable
    body = event.model_dump_json().encode()
    message_id = webhook_id(event)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
    }
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    status: int | None = None
    detail: str | None = None
    # Connects to the address check_target resolved and judged, never resolving the name again
    # (DNS rebinding); a redirect is just a failed status, never followed.
    connection = pinned_connection(target, timeout=TIMEOUT_SECONDS)
    try:
        connection.request("POST", path, body=body, headers=headers)
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        detail = type(error).__name__
    finally:
        connection.close()
    latency_ms = (time.monotonic() - started) * 1000
    _log_attempt(ctx, delivery.job_id, attempt, status, latency_ms, detail)
    if status is None or not 200 <= status < 300:
        raise WebhookNotDelivered(detail or f"HTTP {status}")
    logger.info("webhook delivered", extra={"job_id": delivery.job_id, "attempt": attempt})
    return True


def _log_attempt(
    ctx: ApiContext,
    job_id: str,
    attempt: int,
    status: int | None,
    latency_ms: float | None,
    detail: str | None,
) -> None:
    ctx.table.append_event(
        job_id,
        JobEvent(
            at=iso(ctx.now()),
            kind="webhook",
            attempt=attempt,
            http_status=status,
            latency_ms=None if latency_ms is None else round(latency_ms, 1),
            delivered=status is not None and 200 <= status < 300,
            detail=detail,
        ),
    )
