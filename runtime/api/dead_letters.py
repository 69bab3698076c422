"""SQS batch Lambda on the lane DLQs: a job whose message exhausted its deliveries is FAILED.

Without this, a job whose worker crashed on every attempt would sit in RENDERING forever and its
caller would never hear back. The status change is conditional (a job that already reached a final
status keeps it: the worker may have finished just as the message was redriven), then the
completion event goes to the topic with the `status` and `tenant` attributes subscribers filter
on. A failed publish fails only that record (partial batch response), and the redelivery publishes
without touching the status again.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import ValidationError

from runtime.api.context import ApiContext, iso
from runtime.api.observability import logger, tracer
from runtime.api.settings import Settings
from runtime.common.completion import completion_event, publish_completion
from runtime.common.events import JobEvent, append_clause
from runtime.common.jobs import CompletionEvent, ErrorCode, JobError, JobMessage, JobStatus
from runtime.common.metrics import NAMESPACE, Metric, dead_letter_dimensions
from runtime.common.names import JobsTable
from runtime.common.records import JobRecord, job_pk

# Set once the failure event is out, so a redelivered record neither re-publishes nor skips it.
PUBLISHED_ATTRIBUTE = "dead_letter_event_published"
EXHAUSTED_MESSAGE = "the job failed on every delivery attempt"

processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method(capture_response=False)  # responses stay out of traces
def fail_exhausted_job(ctx: ApiContext, message: JobMessage) -> CompletionEvent | None:
    """Mark the job FAILED (RETRIES_EXHAUSTED) unless final, and publish its event.

    Returns the published event, or None when there was nothing to do.
    """
    record = _mark_failed(ctx, message.job_id)
    if record is None:
        return None
    event = completion_event(record)  # FAILED with the RETRIES_EXHAUSTED error
    publish_completion(ctx.sns, ctx.settings.completion_topic_arn, event)
    ctx.table.update_item(
        Key={JobsTable.PARTITION_KEY: job_pk(record.job_id)},
        UpdateExpression="SET #published = :yes",
        ExpressionAttributeNames={"#published": PUBLISHED_ATTRIBUTE},
        ExpressionAttributeValues={":yes": True},
    )
    with single_metric(
        name=Metric.JOBS_FAILED,
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions=dead_letter_dimensions(record.lane.value),
    ):
        pass  # emitted when the block closes
    return event


def _exhausted() -> JobError:
    return JobError(code=ErrorCode.RETRIES_EXHAUSTED, message=EXHAUSTED_MESSAGE)


def _mark_failed(ctx: ApiContext, job_id: str) -> JobRecord | None:
    error = _exhausted()
    now = iso(ctx.now())
    clause, event_values = append_clause(
        JobEvent(at=now, kind="status", status=JobStatus.FAILED, detail=error.code.value)
    )
    try:
        response = ctx.table.update_item(
            Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
            UpdateExpression=(
                f"SET #status = :failed, #error = :error, updated_at = :now, {clause}"
                " REMOVE lease_owner, lease_expires_at, #unsent, queued_lane"
            ),
            ConditionExpression="attribute_exists(#pk) AND NOT #status IN (:s, :f, :c, :e)",
            ExpressionAttributeNames={
                "#pk": JobsTable.PARTITION_KEY,
                "#status": "status",
                "#error": "error",
                "#unsent": JobsTable.UNSENT_INDEX_PARTITION_KEY,
            },
            ExpressionAttributeValues={
                ":failed": JobStatus.FAILED.value,
                ":error": error.model_dump(mode="json"),
                ":now": now,
                ":s": JobStatus.SUCCEEDED.value,
                ":f": JobStatus.FAILED.value,
                ":c": JobStatus.CANCELLED.value,
                ":e": JobStatus.EXPIRED.value,
                **event_values,
            },
            ReturnValues="ALL_NEW",
        )
        return JobRecord.from_item(response["Attributes"])
    except ClientError as failure:
        if failure.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
    item = ctx.table.get_item(
        Key={JobsTable.PARTITION_KEY: job_pk(job_id)}, ConsistentRead=True
    ).get("Item")
    if item is None:
        logger.warning("dead letter for an unknown job", extra={"job_id": job_id})
        return None
    record = JobRecord.from_item(item)
    unpublished_by_us = (
        record.status == JobStatus.FAILED
        and record.error is not None
        and record.error.code == ErrorCode.RETRIES_EXHAUSTED
        and not item.get(PUBLISHED_ATTRIBUTE)
        # The worker fails a job itself on its last receive and clears `completion_pending`
        # once its own event is out; only an event nobody got out is ours to publish.
        and record.completion_pending is not False
    )
    if unpublished_by_us:
        return record  # an earlier attempt failed it but did not get the event out
    logger.info(
        "job already final; dead letter ignored",
        extra={"job_id": job_id, "status": record.status.value},
    )
    return None


@functools.cache
def _context() -> ApiContext:
    return ApiContext.from_settings(Settings.from_env())


def _handle_record(record: SQSRecord) -> None:
    try:
        message = JobMessage.model_validate_json(record.body)
    except ValidationError:
        # Nothing identifies a job in it, so nothing can be failed; keeping it would only
        # redeliver it forever. Logged by id (never by content) for an operator to inspect.
        logger.error("unreadable dead letter dropped", extra={"message_id": record.message_id})
        return
    logger.set_correlation_id(message.correlation_id)
    fail_exhausted_job(_context(), message)


@logger.inject_lambda_context(clear_state=True, log_event=False)  # never the event
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(
            event=event, record_handler=_handle_record, processor=processor, context=context
        )
    )
