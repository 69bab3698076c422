"""The completion event of a final job record, and its publication to the completion topic.

One builder and one publisher for every place a job ends: the worker (succeeded/failed/expired),
the API (cancelled) and the dead-letter handler (retries exhausted), so subscribers get the same
shape and the same filterable SNS attributes whoever finished the job. The webhook deliveries
Lambda rebuilds a redelivered event with the same builder.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from runtime.common.jobs import (
    SNS_ATTRIBUTE_STATUS,
    SNS_ATTRIBUTE_TENANT,
    CompletionEvent,
    JobStatus,
)
from runtime.common.records import JobRecord

CompletionType = Literal["job.succeeded", "job.failed", "job.cancelled", "job.expired"]
_TYPES: dict[JobStatus, CompletionType] = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
    JobStatus.EXPIRED: "job.expired",
}


def completion_event(record: JobRecord) -> CompletionEvent:
    """The event of a record in a final status (KeyError for any other status)."""
    weights = cast(
        Literal["official", "custom", "random"] | None,
        record.weights if record.weights in {"official", "custom", "random"} else None,
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


def publish_completion(sns: Any, topic_arn: str, event: CompletionEvent) -> None:
    """Publish with the `status` and `tenant` attributes that subscription filters match on."""
    sns.publish(
        TopicArn=topic_arn,
        Message=event.model_dump_json(),
        MessageAttributes={
            SNS_ATTRIBUTE_STATUS: {"DataType": "String", "StringValue": event.status.value},
            SNS_ATTRIBUTE_TENANT: {"DataType": "String", "StringValue": event.tenant},
        },
    )
