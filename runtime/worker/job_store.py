"""Job record transitions in DynamoDB, each one conditional on the worker still holding the lease.

The lease (owner, attempt, expiry) is what makes "exactly one render" true: only one worker can
move a job out of QUEUED (or take over a lease whose holder stopped extending it), and every later
write is fenced on owner + attempt, so a worker that lost its lease cannot overwrite the winner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from runtime.common.events import (
    EVENTS_ATTRIBUTE,
    JobEvent,
    append_clause,
    append_event,
    event_item,
)
from runtime.common.jobs import JobError, JobStatus, MediaRef, StageTimings
from runtime.common.names import JobsTable
from runtime.common.records import JobRecord, job_pk


class LeaseLost(Exception):
    """The job is no longer ours: another worker took over an expired lease, or it was cancelled."""


@dataclass(frozen=True)
class Lease:
    job_id: str
    owner: str
    attempt: int
    # Index in the job's event log of the PREPARING event the acquire appended (a wait for
    # another job's render replaces it, so a wait logs one event, not two).
    acquired_event: int | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC, so lease expiries compare correctly as strings."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def with_status_event(
    expression: str,
    values: dict[str, Any],
    status: JobStatus,
    detail: str | None = None,
    *,
    resumed_from_frame: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Join the status event into the update that makes the change (one write, never apart)."""
    clause, event_values = append_clause(
        JobEvent(
            at=iso(utc_now()),
            kind="status",
            status=status,
            detail=detail,
            resumed_from_frame=resumed_from_frame,
        )
    )
    head, removal, tail = expression.partition(" REMOVE ")
    return f"{head}, {clause}{removal}{tail}", {**values, **event_values}


def _dynamo_value(value: BaseModel) -> Any:
    return json.loads(value.model_dump_json(exclude_none=True), parse_float=Decimal)


@dataclass(frozen=True, kw_only=True)
class Success:
    output: MediaRef
    frames: int
    fps: float
    sync_confidence: float | None
    low_sync: bool | None
    weights: str
    timings: StageTimings
    gpu_seconds: float | None = None
    estimated_cost_usd: float | None = None
    instance_type: str | None = None
    cache_key: str | None = None
    # Copied from the output cache: no segments of this job back the output or a preview.
    cache_hit: bool = False


class JobStore:
    def __init__(self, table: Any) -> None:
        self._table = table  # boto3 DynamoDB Table resource

    @property
    def table(self) -> Any:
        """The jobs table, for the other items workers keep there (render claims)."""
        return self._table

    def get(self, job_id: str) -> JobRecord | None:
        item = self._table.get_item(
            Key={JobsTable.PARTITION_KEY: job_pk(job_id)}, ConsistentRead=True
        ).get("Item")
        return JobRecord.from_item(item) if item else None

    def acquire(
        self, job_id: str, *, owner: str, message_id: str, lease_seconds: float
    ) -> tuple[Lease, JobRecord] | None:
        """QUEUED -> PREPARING (or take over an expired lease); None if someone else has it.
        The previous attempt's GPU seconds (as its last heartbeat recorded them) are added to
        `gpu_seconds_before`, so the cost of a resumed job counts every attempt."""
        now = utc_now()
        expression, event_values = with_status_event(
            "SET #status = :preparing, lease_owner = :owner, lease_expires_at = :expires,"
            " lease_message_id = :message, updated_at = :now,"
            " attempt = if_not_exists(attempt, :zero) + :one,"
            " gpu_seconds_before = if_not_exists(gpu_seconds_before, :zero)"
            " + if_not_exists(attempt_gpu_seconds, :zero), attempt_gpu_seconds = :zero"
            " REMOVE queued_lane",
            {},
            JobStatus.PREPARING,
        )
        try:
            response = self._table.update_item(
                Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
                UpdateExpression=expression,
                ConditionExpression=(
                    "attribute_exists(#pk) AND (#status = :queued OR"
                    " ((#status = :preparing OR #status = :rendering) AND lease_expires_at < :now))"
                ),
                ExpressionAttributeNames={"#status": "status", "#pk": JobsTable.PARTITION_KEY},
                ExpressionAttributeValues={
                    ":preparing": JobStatus.PREPARING.value,
                    ":rendering": JobStatus.RENDERING.value,
                    ":queued": JobStatus.QUEUED.value,
                    ":owner": owner,
                    ":expires": iso(now + timedelta(seconds=lease_seconds)),
                    ":message": message_id,
                    ":now": iso(now),
                    ":zero": 0,
                    ":one": 1,
                    **event_values,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if condition_failed(error):
                return None
            raise
        attributes = response["Attributes"]
        record = JobRecord.from_item(attributes)
        acquired_event = len(attributes.get(EVENTS_ATTRIBUTE) or []) - 1
        return Lease(job_id, owner, record.attempt, acquired_event), record

    def extend(
        self, lease: Lease, lease_seconds: float, *, gpu_seconds: float | None = None
    ) -> None:
        """Renew the lease; `gpu_seconds`: how long this attempt has held the GPU so far (the
        next acquire adds it to the job's total, however this attempt ends)."""
        expression = "SET lease_expires_at = :expires"
        values: dict[str, Any] = {":expires": iso(utc_now() + timedelta(seconds=lease_seconds))}
        if gpu_seconds is not None:
            expression += ", attempt_gpu_seconds = :gpu"
            values[":gpu"] = Decimal(str(round(gpu_seconds, 3)))
        self._fenced_update(lease, expression, values)

    def start_rendering(self, lease: Lease, *, resumed_from_frame: int = 0) -> None:
        """PREPARING -> RENDERING; a render that reuses earlier segments says where it starts."""
        expression = "SET #status = :rendering, updated_at = :now"
        values: dict[str, Any] = {":rendering": JobStatus.RENDERING.value, ":now": iso(utc_now())}
        if resumed_from_frame > 0:
            expression += ", resumed_from_frame = :resumed"
            values[":resumed"] = resumed_from_frame
        else:
            expression += " REMOVE resumed_from_frame"
        self._fenced_update(
            lease,
            *with_status_event(
                expression,
                values,
                JobStatus.RENDERING,
                "resumed" if resumed_from_frame > 0 else None,
                resumed_from_frame=resumed_from_frame or None,
            ),
        )

    def segment_done(
        self,
        lease: Lease,
        *,
        segments_done: int,
        segment_frames: int,
        content_hash: str,
        encoding: str,
        fps: float,
    ) -> None:
        """Segments 0..segments_done-1 of render `content_hash`, encoded with `encoding` (the
        engine's `output_encoding`), are in S3 (resume point); the fps lets the API give the
        preview's segments their durations."""
        self._fenced_update(
            lease,
            "SET segments_done = :done, segment_frames = :frames, segments_hash = :hash,"
            " segments_encoding = :encoding, fps = :fps",
            {
                ":done": segments_done,
                ":frames": segment_frames,
                ":hash": content_hash,
                ":encoding": encoding,
                ":fps": Decimal(str(fps)),
            },
        )

    def reset_segments(self, lease: Lease) -> None:
        """Forget segments of another render (inputs, options or encoding changed): start from
        zero."""
        self._fenced_update(
            lease, "REMOVE segments_done, segment_frames, segments_hash, segments_encoding", {}
        )

    def mark_preview_ready(self, lease: Lease) -> bool:
        """Log `preview_ready` once per job (False: already logged, or no longer our job)."""
        clause, event_values = append_clause(JobEvent(at=iso(utc_now()), kind="preview_ready"))
        now = iso(utc_now())
        try:
            self._table.update_item(
                Key={JobsTable.PARTITION_KEY: job_pk(lease.job_id)},
                UpdateExpression=f"SET preview_ready_at = :now, {clause}",
                ConditionExpression=(
                    "attribute_not_exists(preview_ready_at) AND lease_owner = :owner"
                    " AND attempt = :attempt"
                ),
                ExpressionAttributeValues={
                    ":now": now,
                    ":owner": lease.owner,
                    ":attempt": lease.attempt,
                    **event_values,
                },
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def progress(self, lease: Lease, frames_done: int, frames_total: int) -> None:
        """Progress never goes back: a resumed attempt restarts at its first missing segment,
        behind the frames the interrupted one had reported, so a lower count is not written
        (a conditional update; losing only that condition is no lost lease)."""
        fraction = Decimal(str(round(frames_done / frames_total, 4))) if frames_total else 0
        try:
            self._fenced_update(
                lease,
                "SET progress = :progress, frames_done = :done, frames_total = :total",
                {":progress": fraction, ":done": frames_done, ":total": frames_total},
                condition="(attribute_not_exists(frames_done) OR frames_done <= :done)",
            )
        except LeaseLost:
            if not self._holds(lease):
                raise

    def _holds(self, lease: Lease) -> bool:
        record = self.get(lease.job_id)
        return (
            record is not None
            and record.lease_owner == lease.owner
            and record.attempt == lease.attempt
            and record.status in (JobStatus.PREPARING, JobStatus.RENDERING)
        )

    def succeed(self, lease: Lease, result: Success) -> JobRecord:
        values: dict[str, Any] = {
            ":succeeded": JobStatus.SUCCEEDED.value,
            ":now": iso(utc_now()),
            ":output": _dynamo_value(result.output),
            ":frames": result.frames,
            ":fps": Decimal(str(result.fps)),
            ":weights": result.weights,
            ":timings": _dynamo_value(result.timings),
            ":one": 1,
        }
        expression = (
            "SET #status = :succeeded, updated_at = :now, #output = :output,"
            " frames_done = :frames, frames_total = :frames, fps = :fps, weights = :weights,"
            " timings = :timings, progress = :one"
        )
        if result.sync_confidence is not None:
            expression += ", sync_confidence = :sync"
            values[":sync"] = Decimal(str(round(result.sync_confidence, 4)))
        if result.low_sync is not None:
            expression += ", low_sync = :low"
            values[":low"] = result.low_sync
        if result.cache_hit:  # an interrupted attempt's segments were deleted: no preview
            expression += ", segments_done = :zero_segments"
            values[":zero_segments"] = 0
        for name, value in (
            ("gpu_seconds", result.gpu_seconds),
            ("estimated_cost_usd", result.estimated_cost_usd),
            ("instance_type", result.instance_type),
            ("output_cache_key", result.cache_key),
        ):
            if value is not None:
                expression += f", {name} = :{name}"
                values[f":{name}"] = Decimal(str(value)) if isinstance(value, float) else value
        return self._finish(
            lease,
            *with_status_event(expression, values, JobStatus.SUCCEEDED),
            {"#output": "output"},
        )

    def fail(self, lease: Lease, error: JobError, timings: StageTimings) -> JobRecord:
        return self._finish_with_error(lease, JobStatus.FAILED, error, timings)

    def cancel(self, lease: Lease, error: JobError, timings: StageTimings) -> JobRecord:
        """Running past its deadline: CANCELLED with the reason, announced like any outcome."""
        return self._finish_with_error(lease, JobStatus.CANCELLED, error, timings)

    def _finish_with_error(
        self, lease: Lease, status: JobStatus, error: JobError, timings: StageTimings
    ) -> JobRecord:
        return self._finish(
            lease,
            *with_status_event(
                "SET #status = :final, updated_at = :now, #error = :error, timings = :timings",
                {
                    ":final": status.value,
                    ":now": iso(utc_now()),
                    ":error": _dynamo_value(error),
                    ":timings": _dynamo_value(timings),
                },
                status,
                error.code.value,
            ),
            {"#error": "error"},
        )

    def expire(self, job_id: str, error: JobError) -> JobRecord | None:
        """QUEUED -> EXPIRED without a lease (nothing runs); None if it is no longer QUEUED."""
        expression, event_values = with_status_event(
            "SET #status = :expired, updated_at = :now, #error = :error,"
            " completion_pending = :pending REMOVE #unsent, queued_lane",
            {},
            JobStatus.EXPIRED,
            error.code.value,
        )
        try:
            response = self._table.update_item(
                Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(#pk) AND #status = :queued",
                ExpressionAttributeNames={
                    "#status": "status",
                    "#pk": JobsTable.PARTITION_KEY,
                    "#error": "error",
                    "#unsent": JobsTable.UNSENT_INDEX_PARTITION_KEY,
                },
                ExpressionAttributeValues={
                    ":expired": JobStatus.EXPIRED.value,
                    ":queued": JobStatus.QUEUED.value,
                    ":now": iso(utc_now()),
                    ":error": _dynamo_value(error),
                    ":pending": True,
                    **event_values,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error_:
            if condition_failed(error_):
                return None
            raise
        return JobRecord.from_item(response["Attributes"])

    def hand_back(
        self, lease: Lease, *, batch_size_hint: int | None = None, reason: str | None = None
    ) -> None:
        """Back to QUEUED for the next delivery; the attempt count stays as it is."""
        expression, values = _queued_again()
        if batch_size_hint is not None:
            expression += ", batch_size_hint = :hint"
            values[":hint"] = batch_size_hint
        expression += _UNLEASE
        detail = reason or (
            "handed back" if batch_size_hint is None else "handed back with a smaller batch"
        )
        self._fenced_update(lease, *with_status_event(expression, values, JobStatus.QUEUED, detail))

    def wait_for_content(self, lease: Lease, detail: str) -> int:
        """Back to QUEUED to wait for another job's render of the same content. A wait is not a
        delivery attempt: `attempt` goes back to what it was before this delivery's acquire
        (the lease it fenced ends with this very write and nothing writes under it after: the
        heartbeat has stopped, no render started), `claim_waits` counts the wait, and the
        acquire's PREPARING event is replaced by this wait's QUEUED event, so each wait logs one
        event. Returns the waits so far."""
        expression, values = _queued_again()
        expression += (
            ", attempt = attempt - :one, claim_waits = if_not_exists(claim_waits, :zero) + :one"
        )
        values[":one"] = 1
        values[":zero"] = 0
        event = JobEvent(at=iso(utc_now()), kind="status", status=JobStatus.QUEUED, detail=detail)
        if lease.acquired_event is not None and lease.acquired_event >= 0:
            expression += f", {EVENTS_ATTRIBUTE}[{lease.acquired_event}] = :wait_event"
            values[":wait_event"] = event_item(event)
        else:  # an acquire that logged nothing (cannot happen today): log the wait itself
            clause, event_values = append_clause(event)
            expression += f", {clause}"
            values.update(event_values)
        expression += _UNLEASE
        response = self._fenced_update(lease, expression, values, return_new=True)
        return int(response["Attributes"]["claim_waits"])

    def record_event(self, job_id: str, event: JobEvent) -> None:
        """Append to the job's event log (bounded; a full log drops the event)."""
        append_event(self._table, job_pk(job_id), event)

    def mark_completion_sent(self, job_id: str) -> None:
        self._table.update_item(
            Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
            UpdateExpression="SET completion_pending = :sent",
            ConditionExpression="attribute_exists(#pk)",  # never create a partial item
            ExpressionAttributeNames={"#pk": JobsTable.PARTITION_KEY},
            ExpressionAttributeValues={":sent": False},
        )

    def _finish(
        self, lease: Lease, expression: str, values: dict[str, Any], names: dict[str, str]
    ) -> JobRecord:
        expression += ", completion_pending = :pending"
        expression += _UNLEASE
        values = {**values, ":pending": True}
        response = self._fenced_update(lease, expression, values, names, return_new=True)
        return JobRecord.from_item(response["Attributes"])

    def _fenced_update(
        self,
        lease: Lease,
        expression: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
        *,
        return_new: bool = False,
        condition: str | None = None,
    ) -> Any:
        """`condition`: one more the write needs; its failure also raises LeaseLost."""
        fence = (
            "lease_owner = :lease_owner AND attempt = :lease_attempt"
            " AND #status IN (:lease_preparing, :lease_rendering)"
        )
        request: dict[str, Any] = {
            "Key": {JobsTable.PARTITION_KEY: job_pk(lease.job_id)},
            "UpdateExpression": expression,
            # Status too: a job cancelled meanwhile is no longer ours to write (or to render).
            "ConditionExpression": fence if condition is None else f"{fence} AND {condition}",
            "ExpressionAttributeValues": {
                **values,
                ":lease_owner": lease.owner,
                ":lease_attempt": lease.attempt,
                ":lease_preparing": JobStatus.PREPARING.value,
                ":lease_rendering": JobStatus.RENDERING.value,
            },
            "ExpressionAttributeNames": {"#status": "status", **(names or {})},
            "ReturnValues": "ALL_NEW" if return_new else "NONE",
        }
        try:
            return self._table.update_item(**request)
        except ClientError as error:
            if condition_failed(error):
                raise LeaseLost(lease.job_id) from None
            raise


_UNLEASE = " REMOVE lease_owner, lease_expires_at, lease_message_id"


def _queued_again() -> tuple[str, dict[str, Any]]:
    """The start of a hand-back: QUEUED, back in the lane's queue-position index (`lane` is the
    job's own attribute). Progress stays: the finished segments are kept, and it never goes back."""
    expression = "SET #status = :queued, updated_at = :now, queued_lane = lane"
    values: dict[str, Any] = {
        ":queued": JobStatus.QUEUED.value,
        ":now": iso(utc_now()),
    }
    return expression, values


def condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
