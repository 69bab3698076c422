"""The completion event: built from the final job record, published to SNS, and POSTed to the
job's webhook when it has one."""

from __future__ import annotations

from typing import Any, Literal, cast

from runtime.common.jobs import (
    SNS_ATTRIBUTE_STATUS,
    SNS_ATTRIBUTE_TENANT,
    CompletionEvent,
    JobStatus,
)
from runtime.common.records import JobRecord
from runtime.engine.interface import WeightsKind
from runtime.worker.job_store import JobStore
from runtime.worker.telemetry import logger
from runtime.worker.webhooks import WebhookSender

EventType = Literal["job.succeeded", "job.failed", "job.cancelled", "job.expired"]
_TYPES: dict[JobStatus, EventType] = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
    JobStatus.EXPIRED: "job.expired",
}


def completion_event(record: JobRecord) -> CompletionEvent:
    weights = cast(
        WeightsKind | None, record.weights if record.weights in {"official", "random"} else None
    )
    return CompletionEvent(
        type=_TYPES[record.status],
        job_id=record.job_id,
        tenant=record.tenant,
        status=record.status,
        lane=record.lane,
        correlation_id=record.correlation_id,
        output=record.output,
        frames=record.frames_total if record.status is JobStatus.SUCCEEDED else None,
        fps=record.fps,
        sync_confidence=record.sync_confidence,
        low_sync=record.low_sync,
        weights=weights,
        timings=record.timings,
        error=record.error,
        finished_at=record.updated_at,
    )


class Notifier:
    def __init__(
        self, *, sns: Any, topic_arn: str, store: JobStore, webhooks: WebhookSender | None
    ) -> None:
        self._sns = sns
        self._topic_arn = topic_arn
        self._store = store
        self._webhooks = webhooks

    def job_finished(self, record: JobRecord) -> None:
        """Publish the final record's event; clearing `completion_pending` after it is what lets a
        redelivery finish the job if this worker stops in between."""
        event = completion_event(record)
        self._sns.publish(
            TopicArn=self._topic_arn,
            Message=event.model_dump_json(),
            MessageAttributes={
                SNS_ATTRIBUTE_STATUS: {"DataType": "String", "StringValue": event.status.value},
                SNS_ATTRIBUTE_TENANT: {"DataType": "String", "StringValue": event.tenant},
            },
        )
        self._store.mark_completion_sent(record.job_id)
        if record.webhook_url:
            if self._webhooks is None:
                logger.warning("job has a webhook but no signing secret is configured; not sent")
            else:
                self._webhooks.submit(record.webhook_url, event)
