"""Queue position and ETA of a job, from the lane's backlog, its workers and recent render rates.

- `queue_position`: QUEUED jobs of the lane submitted before this one (0 = next), counted on the
  sparse `queued` index (keys only). SQS standard queues do not promise order, so this is the
  fair-share position, not a guarantee.
- Rate: workers write each finished render's frames and service seconds (download to upload) into
  a rolling window of 20 samples on the lane's item (`LANE#<lane>`), and mark themselves seen on
  every heartbeat. `seconds_per_frame` = total seconds / total frames over the window.
- Workers: those seen in the last `WORKER_WINDOW` (at least 1: a lane scaled to zero starts one).
- A queued job starts after the jobs ahead of it are shared among the workers:
  `start = now + queue_position / workers * mean_job_seconds`; it takes
  `expected_frames * seconds_per_frame` (the frames follow from the audio duration probed at
  submission; the window's mean job time when unknown). A running job ends after its remaining
  frames at the same rate. Without any sample yet the times are null (position is still given).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.api.context import ApiContext, iso
from runtime.common.jobs import JobStatus
from runtime.common.names import JobsTable
from runtime.common.records import JobRecord, lane_stats_pk

WORKER_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class Estimate:
    queue_position: int | None = None
    estimated_start_at: str | None = None
    estimated_done_at: str | None = None


@dataclass(frozen=True)
class LaneRate:
    seconds_per_frame: float
    mean_job_seconds: float
    workers: int


def estimate(ctx: ApiContext, record: JobRecord) -> Estimate:
    if record.status.is_final:
        return Estimate()
    now = ctx.now()
    rate = lane_rate(ctx, record.lane.value, now)
    if record.status is JobStatus.QUEUED:
        position = jobs_ahead(ctx, record.lane.value, record.created_at)
        if rate is None:
            return Estimate(queue_position=position)
        start = now + timedelta(seconds=position / rate.workers * rate.mean_job_seconds)
        seconds = (
            record.expected_frames * rate.seconds_per_frame
            if record.expected_frames
            else rate.mean_job_seconds
        )
        return Estimate(
            queue_position=position,
            estimated_start_at=iso(start),
            estimated_done_at=iso(start + timedelta(seconds=seconds)),
        )
    if rate is None:
        return Estimate()
    if record.frames_total:
        remaining = (record.frames_total - (record.frames_done or 0)) * rate.seconds_per_frame
    elif record.expected_frames:
        remaining = record.expected_frames * rate.seconds_per_frame
    else:
        remaining = rate.mean_job_seconds
    return Estimate(estimated_done_at=iso(now + timedelta(seconds=remaining)))


def jobs_ahead(ctx: ApiContext, lane: str, created_at: str) -> int:
    count = 0
    request: dict[str, Any] = {
        "IndexName": JobsTable.QUEUED_INDEX,
        "KeyConditionExpression": "#lane = :lane AND #created < :created",
        "ExpressionAttributeNames": {
            "#lane": JobsTable.QUEUED_INDEX_PARTITION_KEY,
            "#created": JobsTable.QUEUED_INDEX_SORT_KEY,
        },
        "ExpressionAttributeValues": {":lane": lane, ":created": created_at},
        "Select": "COUNT",
    }
    while True:
        page = ctx.table.query(**request)
        count += int(page.get("Count", 0))
        if "LastEvaluatedKey" not in page:
            return count
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _parse(moment: str) -> datetime:
    try:
        return datetime.fromisoformat(moment)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def lane_rate(ctx: ApiContext, lane: str, now: datetime) -> LaneRate | None:
    item = ctx.table.get_item(Key={JobsTable.PARTITION_KEY: lane_stats_pk(lane)}).get("Item")
    if not item:
        return None
    samples = list((item.get("samples") or {}).values())
    frames = sum(int(sample["frames"]) for sample in samples)
    seconds = sum(float(sample["seconds"]) for sample in samples)
    if frames <= 0 or seconds <= 0:
        return None
    cutoff = now - WORKER_WINDOW
    workers = sum(1 for seen in (item.get("workers") or {}).values() if _parse(str(seen)) >= cutoff)
    return LaneRate(
        seconds_per_frame=seconds / frames,
        mean_job_seconds=seconds / len(samples),
        workers=max(1, workers),
    )
