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


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC, so lease expiries compare correctly as strings."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
    cache_key: str | None = None


class JobStore:
    def __init__(self, table: Any) -> None:
        self._table = table  # boto3 DynamoDB Table resource

    def get(self, job_id: str) -> JobRecord | None:
        item = self._table.get_item(
            Key={JobsTable.PARTITION_KEY: job_pk(job_id)}, ConsistentRead=True
        ).get("Item")
        return JobRecord.from_item(item) if item else None

    def acquire(
        self, job_id: str, *, owner: str, message_id: str, lease_seconds: float
    ) -> tuple[Lease, JobRecord] | None:
        """QUEUED -> PREPARING (or take over an expired lease); None if someone else has it."""
        now = utc_now()
        try:
            response = self._table.update_item(
                Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
                UpdateExpression=(
                    "SET #status = :preparing, lease_owner = :owner, lease_expires_at = :expires,"
                    " lease_message_id = :message, updated_at = :now,"
                    " attempt = if_not_exists(attempt, :zero) + :one"
                ),
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
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _condition_failed(error):
                return None
            raise
        record = JobRecord.from_item(response["Attributes"])
        return Lease(job_id, owner, record.attempt), record

    def extend(self, lease: Lease, lease_seconds: float) -> None:
        self._fenced_update(
            lease,
            "SET lease_expires_at = :expires",
            {":expires": iso(utc_now() + timedelta(seconds=lease_seconds))},
        )

    def start_rendering(self, lease: Lease) -> None:
        self._fenced_update(
            lease,
            "SET #status = :rendering, updated_at = :now",
            {":rendering": JobStatus.RENDERING.value, ":now": iso(utc_now())},
        )

    def progress(self, lease: Lease, frames_done: int, frames_total: int) -> None:
        fraction = Decimal(str(round(frames_done / frames_total, 4))) if frames_total else 0
        self._fenced_update(
            lease,
            "SET progress = :progress, frames_done = :done, frames_total = :total",
            {":progress": fraction, ":done": frames_done, ":total": frames_total},
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
        if result.cache_key is not None:
            expression += ", output_cache_key = :cache_key"
            values[":cache_key"] = result.cache_key
        return self._finish(lease, expression, values, {"#output": "output"})

    def fail(self, lease: Lease, error: JobError, timings: StageTimings) -> JobRecord:
        return self._finish(
            lease,
            "SET #status = :failed, updated_at = :now, #error = :error, timings = :timings",
            {
                ":failed": JobStatus.FAILED.value,
                ":now": iso(utc_now()),
                ":error": _dynamo_value(error),
                ":timings": _dynamo_value(timings),
            },
            {"#error": "error"},
        )

    def hand_back(self, lease: Lease, *, batch_size_hint: int | None = None) -> None:
        """Back to QUEUED for the next delivery; the attempt count stays as it is."""
        expression = "SET #status = :queued, updated_at = :now, progress = :zero"
        values: dict[str, Any] = {
            ":queued": JobStatus.QUEUED.value,
            ":now": iso(utc_now()),
            ":zero": 0,
        }
        if batch_size_hint is not None:
            expression += ", batch_size_hint = :hint"
            values[":hint"] = batch_size_hint
        expression += " REMOVE lease_owner, lease_expires_at, lease_message_id"
        self._fenced_update(lease, expression, values)

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
        expression += " REMOVE lease_owner, lease_expires_at, lease_message_id"
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
    ) -> Any:
        request: dict[str, Any] = {
            "Key": {JobsTable.PARTITION_KEY: job_pk(lease.job_id)},
            "UpdateExpression": expression,
            # Status too: a job cancelled meanwhile is no longer ours to write (or to render).
            "ConditionExpression": (
                "lease_owner = :lease_owner AND attempt = :lease_attempt"
                " AND #status IN (:lease_preparing, :lease_rendering)"
            ),
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
            if _condition_failed(error):
                raise LeaseLost(lease.job_id) from None
            raise


def _condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
