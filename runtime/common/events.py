"""The job's event log: every status change and every webhook attempt, kept on the job item.

Design: a bounded list attribute `events` on the job's own item (not separate items). A status
event is appended *in the same conditional update* that changes the status, so the log can never
miss or invent a transition; webhook attempts are appended by a separate update that stops at
`MAX_JOB_EVENTS` (status changes are bounded by the retry policy, attempts are not). Events carry
times, statuses, HTTP status codes and latencies only: never URLs, headers or payloads.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from runtime.common.jobs import JobStatus
from runtime.common.names import JobsTable

EVENTS_ATTRIBUTE = "events"
# ~150 bytes each: 200 events stay far below DynamoDB's 400 KB item limit.
MAX_JOB_EVENTS = 200
# Receives of one webhook delivery message (one attempt each) before its dead-letter queue.
WEBHOOK_MAX_RECEIVES = 5
# The deliveries Lambda makes one attempt (10 s HTTP timeout) per invocation; the queue's
# visibility (AWS: six times the consumer's timeout) is also the backoff between attempts.
WEBHOOK_HANDLER_TIMEOUT_SECONDS = 30
WEBHOOK_QUEUE_VISIBILITY_SECONDS = 6 * WEBHOOK_HANDLER_TIMEOUT_SECONDS

# "preview_ready": the first segment of the render exists, `preview_url` plays (logged once).
EventKind = Literal["status", "webhook", "webhook.redelivery_requested", "preview_ready"]


class JobEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    at: str  # ISO-8601 UTC
    kind: EventKind
    status: JobStatus | None = None  # kind "status": the new status
    detail: str | None = None  # a short reason: an error code, "handed back", "redelivery"
    resumed_from_frame: int | None = None  # kind "status" RENDERING: the attempt's first frame
    attempt: int | None = None  # kind "webhook": attempt number within one delivery
    http_status: int | None = None  # kind "webhook": the receiver's status; None: no response
    latency_ms: float | None = None  # kind "webhook": request to response (or to the error)
    delivered: bool | None = None  # kind "webhook": a 2xx came back


def event_item(event: JobEvent) -> dict[str, Any]:
    """The event as a DynamoDB (resource-level) map: Decimals, no None values."""
    item: dict[str, Any] = json.loads(event.model_dump_json(exclude_none=True), parse_float=Decimal)
    return item


def append_clause(event: JobEvent) -> tuple[str, dict[str, Any]]:
    """A `SET` clause (without `SET`) appending `event`, and the values it uses; for joining into
    a status update so the change and its event are one write."""
    return (
        f"{EVENTS_ATTRIBUTE} = list_append(if_not_exists({EVENTS_ATTRIBUTE}, :no_events),"
        " :new_events)",
        {":no_events": [], ":new_events": [event_item(event)]},
    )


def append_event(table: Any, job_id_pk: str, event: JobEvent) -> bool:
    """Append one event on its own (webhook attempts); False when the job is gone or the log is
    full. Never raises for those: the log must not break a delivery."""
    clause, values = append_clause(event)
    try:
        table.update_item(
            Key={JobsTable.PARTITION_KEY: job_id_pk},
            UpdateExpression=f"SET {clause}",
            ConditionExpression=(
                f"attribute_exists(#pk) AND (attribute_not_exists({EVENTS_ATTRIBUTE})"
                f" OR size({EVENTS_ATTRIBUTE}) < :max_events)"
            ),
            ExpressionAttributeNames={"#pk": JobsTable.PARTITION_KEY},
            ExpressionAttributeValues={**values, ":max_events": MAX_JOB_EVENTS},
        )
    except table.meta.client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def events_of(item: dict[str, Any]) -> list[JobEvent]:
    """The job item's events, oldest first."""
    raw = item.get(EVENTS_ATTRIBUTE) or []
    return [JobEvent.model_validate(json.loads(json.dumps(e, default=_number))) for e in raw]


def _number(value: object) -> int | float:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class WebhookDelivery(BaseModel):
    """A message on the webhook deliveries queue: which job's final event to (re)send. The URL
    stays in the job record; the event is rebuilt from the record when it is sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    reason: Literal["redelivery", "worker_gave_up"]
