"""Dead letters (on the lane DLQs; entry point `entrypoints.dead_letters`): a job whose message
exhausted its deliveries is FAILED.

Without this, a job whose worker crashed on every attempt would sit in RENDERING forever and its
caller would never hear back. The status change is conditional (a job that already reached a final
status keeps it, and its files: the worker may have finished just as the message was redriven).
A job failed here has no output and no preview to finish, so its render segments and playlist are
deleted at once (best effort: the previews' lifecycle rule takes stragglers), then the
completion event goes to the topic with the `status` and `tenant` attributes subscribers filter
on. A failed publish fails only that record (partial batch response), and the redelivery publishes
without touching the status again.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from runtime.api.context import ApiContext, iso
from runtime.api.observability import logger, tracer
from runtime.common.completion import completion_event, publish_completion
from runtime.common.events import JobEvent
from runtime.common.jobs import CompletionEvent, ErrorCode, JobError, JobMessage, JobStatus
from runtime.common.metrics import NAMESPACE, Metric, dead_letter_dimensions
from runtime.common.records import JobRecord
from runtime.common.render_files import delete_render_files

# Set once the failure event is out, so a redelivered record neither re-publishes nor skips it.
PUBLISHED_ATTRIBUTE = "dead_letter_event_published"
EXHAUSTED_MESSAGE = "the job failed on every delivery attempt"


@tracer.capture_method(capture_response=False)  # responses stay out of traces
def fail_exhausted_job(ctx: ApiContext, message: JobMessage) -> CompletionEvent | None:
    """Mark the job FAILED (RETRIES_EXHAUSTED) unless final, and publish its event.

    Returns the published event, or None when there was nothing to do.
    """
    record = _mark_failed(ctx, message.job_id)
    if record is None:
        return None
    _delete_render_files(ctx, record)
    event = completion_event(record)  # FAILED with the RETRIES_EXHAUSTED error
    publish_completion(ctx.sns, ctx.settings.completion_topic_arn, event)
    ctx.table.set_flag(record.job_id, PUBLISHED_ATTRIBUTE)
    with single_metric(
        name=Metric.JOBS_FAILED,
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions=dead_letter_dimensions(record.lane.value),
    ):
        pass  # emitted when the block closes
    return event


def _delete_render_files(ctx: ApiContext, record: JobRecord) -> None:
    """By the record's count, as the worker does (this function may delete segment keys but
    not list the bucket), plus one for a segment its crashed attempt uploaded unrecorded."""
    segments = (record.segments_done or 0) + 1
    bucket = ctx.settings.outputs_bucket
    if not delete_render_files(ctx.s3, bucket, record.tenant, record.job_id, segments=segments):
        logger.warning(
            "could not delete the failed job's segments; their lifecycle rule will",
            extra={"job_id": record.job_id},
        )


def _exhausted() -> JobError:
    return JobError(code=ErrorCode.RETRIES_EXHAUSTED, message=EXHAUSTED_MESSAGE)


def _mark_failed(ctx: ApiContext, job_id: str) -> JobRecord | None:
    error = _exhausted()
    now = iso(ctx.now())
    event = JobEvent(at=now, kind="status", status=JobStatus.FAILED, detail=error.code.value)
    failed = ctx.table.fail(job_id, now=now, error=error, event=event)
    if failed is not None:
        return JobRecord.from_item(failed)
    item = ctx.table.job_item(job_id)
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
