"""The job record as stored in the jobs table, shared by the API (writes, reads) and the worker
(conditional status transitions, results).

DynamoDB has no floats and no nested pydantic models, so `to_item`/`from_item` are the only
conversion points; both sides use them and never build items by hand.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from runtime.common.jobs import (
    AvatarOptions,
    JobError,
    JobStatus,
    MediaRef,
    RenderOptions,
    StageTimings,
)
from runtime.common.names import JobsTable, Lane


def job_pk(job_id: str) -> str:
    return f"JOB#{job_id}"


def lane_stats_pk(lane: str) -> str:
    return f"{JobsTable.LANE_STATS_PREFIX}{lane}"


def render_claim_pk(content_hash: str) -> str:
    return f"{JobsTable.RENDER_CLAIM_PREFIX}{content_hash}"


def tenant_kind(tenant: str, kind: str) -> str:
    return f"{tenant}#{kind}"


class JobRecord(BaseModel):
    """One job. `webhook_url` lives here only (never in messages or logs)."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    tenant: str
    lane: Lane
    status: JobStatus
    created_at: str  # ISO-8601 UTC; also the tenant index sort key
    updated_at: str
    correlation_id: str
    avatar_id: str
    avatar: MediaRef
    avatar_options: AvatarOptions = AvatarOptions()
    audio: MediaRef
    options: RenderOptions = RenderOptions()
    webhook_url: str | None = None
    attempt: int = 0  # delivery attempts (retries, crashes, hand-backs); never a claim wait
    # Times this job went back to the queue to wait for another job's render of its content.
    claim_waits: int | None = None
    lease_owner: str | None = None
    lease_expires_at: str | None = None
    # SQS message id the lease was taken with: a redelivery of that same message must not be
    # deleted while the lease lives (deleting it would delete the lease holder's message).
    lease_message_id: str | None = None
    batch_size_hint: int | None = None
    deadline_at: str | None = None  # ISO-8601 UTC, from the submitted `cancel_after`
    progress: float = 0.0
    frames_done: int | None = None
    frames_total: int | None = None
    fps: float | None = None
    timings: StageTimings = StageTimings()
    output: MediaRef | None = None
    # The content-addressed render this output came from (`rendered/...` in the outputs bucket):
    # a purge deletes it too, so an erased person's video does not outlive the purge there.
    output_cache_key: str | None = None
    # The worker's completion event: True from its final write until the event reached SNS (a
    # redelivery then publishes it), False once sent, absent when the worker wrote no outcome
    # (an API cancel, a dead-letter failure): whoever finished the job announces it, once.
    completion_pending: bool | None = None
    sync_confidence: float | None = None
    low_sync: bool | None = None
    weights: str | None = None
    gpu_seconds: float | None = None  # service time of the render (download to upload)
    gpu_seconds_before: float | None = None  # earlier attempts' GPU seconds (summed at acquire)
    estimated_cost_usd: float | None = None  # gpu_seconds x the instance type's hourly price
    instance_type: str | None = None
    error: JobError | None = None
    request_hash: str | None = None  # hash of the submitted body: same idempotency key, same job
    unsent_lane: str | None = None  # present until the queue message is confirmed (sparse index)
    queued_lane: str | None = None  # present while QUEUED (sparse index: queue position)
    expected_frames: int | None = None  # from the audio duration probed at submission, if known
    # Segmented rendering (resume and live preview): segments 0..segments_done-1 of
    # `segment_frames` frames each are in S3 (`keys.segment_key`) for the render `segments_hash`,
    # encoded as the engine reported, `segments_encoding` (e.g. `h264_nvenc`, `libx264/superfast`:
    # the final mp4 joins them unre-encoded).
    segments_done: int | None = None
    segment_frames: int | None = None
    segments_hash: str | None = None
    segments_encoding: str | None = None
    resumed_from_frame: int | None = None  # the latest attempt started here, reusing segments
    preview_ready_at: str | None = None  # when the first segment existed (`preview_ready` event)
    expires_at: int | None = None  # epoch seconds (DynamoDB TTL)

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item (resource-level types: Decimal for numbers, no None values)."""
        plain = json.loads(self.model_dump_json(exclude_none=True), parse_float=Decimal)
        plain[JobsTable.PARTITION_KEY] = job_pk(self.job_id)
        plain[JobsTable.TENANT_INDEX_PARTITION_KEY] = tenant_kind(self.tenant, "job")
        return dict(plain)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> JobRecord:
        return cls.model_validate(json.loads(json.dumps(item, default=_decimal_to_number)))


def _decimal_to_number(value: object) -> int | float:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
