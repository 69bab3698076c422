"""Cancel and purge: a caller stops a job (unless it is final) and may erase its media.

Cancelling is a conditional update, so a finishing worker and the caller cannot both win; the
worker sees the CANCELLED status on its next (fenced) record write and stops. Purging deletes
the job's inputs, segments and output under the tenant's prefix (right to erasure).
"""

from __future__ import annotations

from http import HTTPStatus

from botocore.exceptions import ClientError

from runtime.api.context import ApiContext, iso
from runtime.api.errors import ApiError, ApiErrorCode, invalid
from runtime.api.jobs import owned_job
from runtime.api.models import JobCancelled
from runtime.api.observability import logger, tracer
from runtime.common.completion import completion_event, publish_completion
from runtime.common.events import JobEvent
from runtime.common.jobs import MODEL_VERSION, ErrorCode, JobError, JobStatus, MediaRef
from runtime.common.keys import (
    AVATAR_CACHE_PREFIX,
    RENDERED_CACHE_PREFIX,
    avatar_cache_key,
    is_safe_id,
    output_key,
    tenant_prefix,
)
from runtime.common.records import JobRecord
from runtime.common.render_files import delete_render_files


@tracer.capture_method(capture_response=False)  # responses stay out of traces
def cancel_job(
    ctx: ApiContext,
    tenant: str,
    job_id: str,
    *,
    purge: bool,
    by: str | None = None,
    reason: str | None = None,
) -> JobCancelled:
    """Cancel unless final (a conditional update, so a finishing worker and we cannot both win);
    with `purge`, also delete the job's inputs and outputs now (right to erasure). `by` names
    the caller (its API key) and `reason` is the caller's own, both in the job's error, so the
    status says who stopped it and why."""
    if reason is not None and not reason.isprintable():
        raise invalid("reason", "reason must be printable text (no control characters)")
    record = owned_job(ctx, tenant, job_id)
    cancelled_now = False
    if not record.status.is_final:
        cancelled_now = _mark_cancelled(ctx, record, cancel_reason(tenant, by, reason))
        record = owned_job(ctx, tenant, job_id)
    if record.status != JobStatus.CANCELLED and not purge:
        raise ApiError(
            HTTPStatus.CONFLICT,
            ApiErrorCode.JOB_ALREADY_FINAL,
            f"the job already finished with status {record.status.value}",
            field="job_id",
        )
    if cancelled_now:
        _publish_cancelled(ctx, record)
        if not purge and record.segments_done:
            # An earlier attempt's segments (a handed-back job): no render will use them now.
            _delete_segments(ctx, record)
    if purge:
        purge_job_data(ctx, record)
    return JobCancelled(job_id=job_id, status=record.status, purged=purge)


CANCEL_REASON_MAX = 200


def cancel_reason(tenant: str, by: str | None, reason: str | None = None) -> JobError:
    """The error a caller's cancel leaves on the job: who cancelled it, how, and why."""
    who = f"tenant {tenant}" + (f", {by}" if by else "")
    message = f"cancelled by the caller ({who}) through DELETE /v1/jobs/{{job_id}}"
    return JobError(
        code=ErrorCode.CANCELLED_BY_CALLER,
        message=message + (f": {reason}" if reason else ""),
    )


def _mark_cancelled(ctx: ApiContext, record: JobRecord, reason: JobError) -> bool:
    """False when the job became final meanwhile."""
    now = iso(ctx.now())
    event = JobEvent(
        at=now, kind="status", status=JobStatus.CANCELLED, detail="cancelled by caller"
    )
    return ctx.table.cancel(record.job_id, now=now, error=reason, event=event)


def _publish_cancelled(ctx: ApiContext, record: JobRecord) -> None:
    event = completion_event(record)
    try:
        publish_completion(ctx.sns, ctx.settings.completion_topic_arn, event)
    except ClientError:
        # The cancel itself stands; subscribers can still read the status.
        logger.exception(
            "could not publish the cancellation event", extra={"job_id": record.job_id}
        )


def purge_job_data(ctx: ApiContext, record: JobRecord) -> None:
    """Delete the job's audio, its avatar's source and prepared data, and its output.

    Inputs shared with other jobs of the same tenant go too: erasure is of the person's media,
    not of one job's view of it. Only keys under the tenant's prefix are ever deleted.
    """
    prefix = tenant_prefix(record.tenant)
    objects = [record.audio, record.avatar]
    objects.append(
        MediaRef(bucket=ctx.settings.outputs_bucket, key=output_key(record.tenant, record.job_id))
    )
    if record.output is not None:
        objects.append(record.output)
    if not _delete_segments(ctx, record):
        raise ApiError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            ApiErrorCode.DEPENDENCY_UNAVAILABLE,
            "could not delete the job's segments; retry the purge",
            headers={"Retry-After": "2"},  # as any other failed dependency answers
        )
    cache_key = record.output_cache_key
    if cache_key is not None and cache_key.startswith(RENDERED_CACHE_PREFIX):
        # Content-addressed, so possibly shared with identical jobs: they only lose a cache hit.
        ctx.s3.delete_object(Bucket=ctx.settings.outputs_bucket, Key=cache_key)
    for ref in objects:
        if ref.key.startswith(prefix):
            ctx.s3.delete_object(Bucket=ref.bucket, Key=ref.key)
            upload_id = _upload_id_of(prefix, ref.key)
            if upload_id is not None:
                ctx.table.delete_upload(record.tenant, upload_id)
    if is_safe_id(record.avatar_id):
        _delete_prepared_avatar(ctx, record.avatar_id)
        ctx.table.delete_avatar(record.tenant, record.avatar_id)
    ctx.table.mark_purged(record.job_id, iso(ctx.now()))
    logger.info("job data purged", extra={"job_id": record.job_id})


def _delete_prepared_avatar(ctx: ApiContext, avatar_id: str) -> None:
    """The avatar's prepared data under every model version the cache holds, not only this
    release's: an upgrade leaves the earlier versions' copies (a face's latents) in place until
    the bucket's expiry. Only the version folders are listed (prefix + delimiter), never keys."""
    bucket = ctx.settings.avatar_cache_bucket
    versions = {MODEL_VERSION}
    pages = ctx.s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=AVATAR_CACHE_PREFIX, Delimiter="/"
    )
    for page in pages:
        for folder in page.get("CommonPrefixes", []):
            versions.add(folder["Prefix"].removeprefix(AVATAR_CACHE_PREFIX).rstrip("/"))
    for version in sorted(versions):
        ctx.s3.delete_object(Bucket=bucket, Key=avatar_cache_key(version, avatar_id))


def _delete_segments(ctx: ApiContext, record: JobRecord) -> bool:
    """Whatever segments (and preview playlist) the job has, listed: a render purged mid-way
    leaves them, and a worker still uploading one is stopped by its next (fenced) record write;
    the bucket's expiry removes a straggler. False (logged) if any stayed."""
    bucket = ctx.settings.outputs_bucket
    if delete_render_files(ctx.s3, bucket, record.tenant, record.job_id, segments=None):
        return True
    logger.warning(
        "could not delete the job's segments; their lifecycle rule will",
        extra={"job_id": record.job_id},
    )
    return False


def _upload_id_of(prefix: str, key: str) -> str | None:
    parts = key[len(prefix) :].split("/")
    if len(parts) == 3 and parts[0] == "uploads" and is_safe_id(parts[1]):
        return parts[1]
    return None
