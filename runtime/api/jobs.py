"""Jobs: submit (record first, then queue), status and list (cancel and purge: `cancellation`).

"Nothing accepted is lost": a job record is written conditionally with `unsent_lane` set, then the
message is sent, then `unsent_lane` is cleared. If sending fails the caller gets a 503 and a retry
with the same Idempotency-Key finds the record and sends it; if the caller never retries, the
sweeper finds the record in the sparse `unsent` index and sends it.

The job id is derived from (tenant, Idempotency-Key), so even two racing requests with the same key
can only ever create one record: the conditional put lets exactly one of them win.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import timedelta
from http import HTTPStatus
from typing import Any

from botocore.exceptions import ClientError

from runtime.api import avatars, eta, preview, uploads
from runtime.api.context import ApiContext, iso
from runtime.api.errors import ApiError, ApiErrorCode, invalid, not_found
from runtime.api.job_table import is_conditional_failure
from runtime.api.media_probe import audio_duration_seconds
from runtime.api.models import (
    Job,
    JobAccepted,
    JobEvents,
    JobList,
    JobSummary,
    SubmitJobRequest,
)
from runtime.api.observability import logger, tracer
from runtime.api.pagination import query_tenant_index
from runtime.api.webhooks import check_webhook_url
from runtime.common.events import (
    MAX_JOB_EVENTS,
    JobEvent,
    events_of,
)
from runtime.common.jobs import (
    AvatarOptions,
    JobMessage,
    JobStatus,
    MediaRef,
)
from runtime.common.keys import (
    is_safe_id,
    tenant_prefix,
)
from runtime.common.records import JobRecord, job_pk, tenant_kind

IDEMPOTENCY_FIELD = "Idempotency-Key"


def derive_job_id(tenant: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(f"{tenant}\n{idempotency_key}".encode()).hexdigest()
    return "job_" + digest[:32]


def request_hash(request: SubmitJobRequest) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def message_for(record: JobRecord) -> JobMessage:
    return JobMessage(
        job_id=record.job_id,
        tenant=record.tenant,
        lane=record.lane,
        avatar_id=record.avatar_id,
        avatar=record.avatar,
        avatar_options=record.avatar_options,
        audio=record.audio,
        options=record.options,
        correlation_id=record.correlation_id,
        submitted_at=record.created_at,
        batch_size_hint=record.batch_size_hint,
        has_webhook=record.webhook_url is not None,
        deadline_at=record.deadline_at,
    )


def enqueue(ctx: ApiContext, record: JobRecord) -> None:
    """Send the job's message, then clear `unsent_lane`. Raises if SQS did not take it."""
    ctx.sqs.send_message(
        QueueUrl=ctx.settings.queue_urls[record.lane],
        MessageBody=message_for(record).model_dump_json(),
        MessageAttributes={
            "correlation_id": {"DataType": "String", "StringValue": record.correlation_id},
        },
    )
    try:
        # False: someone else (a retry, the sweeper) already confirmed it.
        ctx.table.confirm_sent(record.job_id)
    except ClientError:
        # The message is on the queue; the sweeper may send it once more and the worker drops
        # the duplicate. Not worth failing an accepted job for.
        logger.warning("could not clear unsent flag", extra={"job_id": record.job_id})


@tracer.capture_method(capture_response=False)  # responses stay out of traces
def submit_job(
    ctx: ApiContext,
    *,
    tenant: str,
    idempotency_key: str,
    request: SubmitJobRequest,
    correlation_id: str,
) -> JobAccepted:
    job_id = derive_job_id(tenant, idempotency_key)
    body_hash = request_hash(request)
    existing = ctx.table.job_item(job_id)
    if existing is not None:
        return _resume(ctx, JobRecord.from_item(existing), body_hash)

    record = _build_record(ctx, tenant, job_id, body_hash, request, correlation_id)
    queued = JobEvent(at=record.created_at, kind="status", status=JobStatus.QUEUED)
    try:
        ctx.table.create_job(record.to_item(), queued)
    except ClientError as error:
        if not is_conditional_failure(error):
            raise
        # A concurrent request with the same key won the write: converge on its record.
        winner = ctx.table.job_item(job_id)
        if winner is None:  # deleted in between: nothing sensible to converge on
            raise
        return _resume(ctx, JobRecord.from_item(winner), body_hash)
    enqueue(ctx, record)
    logger.info("job accepted", extra={"job_id": job_id, "lane": record.lane.value})
    estimate = eta.estimate(ctx, record)
    return JobAccepted(
        job_id=job_id,
        status=record.status,
        status_url=status_url(job_id),
        queue_position=estimate.queue_position,
        estimated_start_at=estimate.estimated_start_at,
        estimated_done_at=estimate.estimated_done_at,
    )


def _resume(ctx: ApiContext, record: JobRecord, body_hash: str) -> JobAccepted:
    """Same key again: the same body gets the same job (finishing its enqueue if needed)."""
    if record.request_hash != body_hash:
        raise ApiError(
            HTTPStatus.CONFLICT,
            ApiErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was already used with a different request body",
            field=IDEMPOTENCY_FIELD,
        )
    if record.unsent_lane is not None and record.status == JobStatus.QUEUED:
        enqueue(ctx, record)
    return JobAccepted(
        job_id=record.job_id, status=record.status, status_url=status_url(record.job_id)
    )


def _build_record(
    ctx: ApiContext,
    tenant: str,
    job_id: str,
    body_hash: str,
    request: SubmitJobRequest,
    correlation_id: str,
) -> JobRecord:
    """Every boundary check that needs our data: ownership, arrival, size, duration."""
    if request.webhook_url is not None:
        check_webhook_url(request.webhook_url, allow_private=ctx.settings.webhook_allow_private)
    lane_limits = ctx.settings.limits.for_lane(request.lane)

    audio = uploads.get_upload(ctx, tenant, request.audio_upload_id, field="audio_upload_id")
    if audio.kind != "audio":
        raise invalid(
            "audio_upload_id", f"audio_upload_id must be an audio upload, not {audio.kind}"
        )
    stored = uploads.stored_object(ctx, audio, field="audio_upload_id")
    if stored.size > lane_limits.max_audio_bytes:
        raise ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            ApiErrorCode.MEDIA_TOO_LARGE,
            f"audio is larger than the {request.lane.value} lane allows"
            f" ({lane_limits.max_audio_bytes} bytes)",
            field="audio_upload_id",
        )
    duration = _probe_duration(ctx, audio, stored.size)
    if duration is not None and duration > lane_limits.max_audio_seconds:
        raise ApiError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ApiErrorCode.AUDIO_TOO_LONG,
            f"audio lasts {duration:.1f} s; the {request.lane.value} lane allows"
            f" {lane_limits.max_audio_seconds:g} s",
            field="audio_upload_id",
        )
    avatar = _resolve_avatar(ctx, tenant, request)
    avatars.check_avatar_size(avatar, lane_limits.max_video_bytes, lane_limits.max_image_bytes)

    now = ctx.now()
    return JobRecord(
        job_id=job_id,
        tenant=tenant,
        lane=request.lane,
        status=JobStatus.QUEUED,
        created_at=iso(now),
        updated_at=iso(now),
        correlation_id=correlation_id,
        avatar_id=avatar.avatar_id,
        avatar=avatar.source,
        avatar_options=avatar.options,
        audio=audio.media,
        options=request.options,
        webhook_url=request.webhook_url,
        deadline_at=(
            None
            if request.cancel_after is None
            else iso(now + timedelta(seconds=request.cancel_after))
        ),
        request_hash=body_hash,
        unsent_lane=request.lane.value,
        queued_lane=request.lane.value,
        expected_frames=None if duration is None else math.ceil(duration * avatar.options.fps),
        expires_at=int((now + timedelta(days=ctx.settings.job_record_ttl_days)).timestamp()),
    )


def _probe_duration(ctx: ApiContext, audio: uploads.UploadRecord, size: int) -> float | None:
    """Best effort: if the ranged reads fail, the worker still enforces the limit."""
    try:
        return audio_duration_seconds(
            lambda start, length: uploads.read_range(ctx, audio, start, length), size
        )
    except ClientError:
        logger.warning("could not read the audio header; the worker will check the duration")
        return None


def _resolve_avatar(
    ctx: ApiContext, tenant: str, request: SubmitJobRequest
) -> avatars.AvatarRecord:
    if request.avatar_id is not None and request.avatar_upload_id is None:
        if request.avatar_options is not None:
            raise invalid("avatar_options", "avatar_options apply only with avatar_upload_id")
        return avatars.get_avatar(ctx, tenant, request.avatar_id, field="avatar_id")
    if request.avatar_upload_id is not None and request.avatar_id is None:
        record, _ = avatars.register_avatar(
            ctx,
            tenant,
            request.avatar_upload_id,
            request.avatar_options or AvatarOptions(),
            field="avatar_upload_id",
        )
        return record
    raise invalid("avatar_id", "give exactly one of avatar_id or avatar_upload_id")


def get_job(ctx: ApiContext, tenant: str, job_id: str) -> Job:
    record = owned_job(ctx, tenant, job_id)
    output_url = expires = None
    if record.status == JobStatus.SUCCEEDED and record.output is not None:
        output_url, expires = _download_link(ctx, tenant, record.output)
    estimate = eta.estimate(ctx, record)
    preview_url, preview_expires = preview.preview_link(ctx, record)
    return Job(
        job_id=record.job_id,
        status=record.status,
        lane=record.lane,
        avatar_id=record.avatar_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
        deadline_at=record.deadline_at,
        progress=record.progress,
        frames_done=record.frames_done,
        frames_total=record.frames_total,
        timings=record.timings,
        sync_confidence=record.sync_confidence,
        low_sync=record.low_sync,
        weights=record.weights if record.weights in ("official", "custom", "random") else None,
        error=record.error,
        output_url=output_url,
        output_url_expires_at=expires,
        resumed_from_frame=record.resumed_from_frame,
        preview_url=preview_url,
        preview_url_expires_at=preview_expires,
        gpu_seconds=record.gpu_seconds,
        estimated_cost_usd=record.estimated_cost_usd,
        queue_position=estimate.queue_position,
        estimated_start_at=estimate.estimated_start_at,
        estimated_done_at=estimate.estimated_done_at,
    )


def job_events(ctx: ApiContext, tenant: str, job_id: str) -> JobEvents:
    events = events_of(owned_job_item(ctx, tenant, job_id))
    return JobEvents(job_id=job_id, events=events, truncated=len(events) >= MAX_JOB_EVENTS)


def _download_link(ctx: ApiContext, tenant: str, output: MediaRef) -> tuple[str | None, str | None]:
    if not output.key.startswith(tenant_prefix(tenant)):
        logger.error("output outside the tenant prefix; not linking it")
        return None, None
    expiry = ctx.settings.limits.download_url_expiry_seconds
    url = ctx.s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": output.bucket, "Key": output.key},
        ExpiresIn=expiry,
    )
    return str(url), iso(ctx.now() + timedelta(seconds=expiry))


def list_jobs(
    ctx: ApiContext,
    tenant: str,
    *,
    status: JobStatus | None,
    limit: int,
    next_token: str | None,
) -> JobList:
    status_filter = None
    if status is not None:
        status_filter = {
            "FilterExpression": "#status = :status",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":status": status.value},
        }
    items, token = query_tenant_index(
        ctx.table,
        partition=tenant_kind(tenant, "job"),
        pk_prefix=job_pk(""),
        limit=limit,
        next_token=next_token,
        filter_kwargs=status_filter,
    )
    summaries = []
    for item in items:
        record = JobRecord.from_item(item)
        summaries.append(
            JobSummary(
                job_id=record.job_id,
                status=record.status,
                lane=record.lane,
                created_at=record.created_at,
                updated_at=record.updated_at,
                progress=record.progress,
            )
        )
    return JobList(jobs=summaries, next_token=token)


def owned_job(ctx: ApiContext, tenant: str, job_id: str) -> JobRecord:
    return JobRecord.from_item(owned_job_item(ctx, tenant, job_id))


def owned_job_item(ctx: ApiContext, tenant: str, job_id: str) -> dict[str, Any]:
    """The tenant's job item, or 404 (another tenant's job is 'not found': existence never
    leaks)."""
    if not is_safe_id(job_id):
        raise not_found("job", "job_id")
    item = ctx.table.job_item(job_id)
    if item is None or item.get("tenant") != tenant:
        raise not_found("job", "job_id")
    return item
