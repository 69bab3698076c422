"""Queue position and ETA of a job, from the lane's backlog, its running jobs and render rates.

- `queue_position`: QUEUED jobs of the lane submitted before this one (0 = next), counted on the
  sparse `queued` index (keys only). SQS standard queues do not promise order, so this is the
  fair-share position, not a guarantee.
- Rates: workers write each finished render's frames and service seconds (download to upload)
  into a rolling window of 20 samples on the lane's item (`LANE#<lane>`); `runtime.api.lane_model`
  fits a job's time to them (per-job overhead + frames x seconds per frame).
- Workers: those seen (heartbeat) in the last `WORKER_WINDOW`, at least 1 (a lane scaled to zero
  starts one). Each heartbeat also names the worker's job, so the running jobs are known.
- A queued job starts when a worker is free after the running jobs' remaining work (from their
  progress) and the jobs ahead of it (each by its own expected frames; one whose deadline passed
  counts nothing, the worker expires it unstarted) are dealt to the workers. It then takes its
  own expected frames' time. A running job ends after its remaining frames at the lane's rate.
- A job past its deadline gets no estimate (it will not start, or is being stopped). Without any
  sample yet the times are null (the position is still given).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.api.context import ApiContext, iso
from runtime.api.lane_model import LaneModel, fit, start_after
from runtime.common.jobs import JobStatus
from runtime.common.names import JobsTable
from runtime.common.records import JobRecord

WORKER_WINDOW = timedelta(minutes=5)
DETAILED_AHEAD = 100  # jobs ahead read one by one (one BatchGetItem); the rest count the mean


@dataclass(frozen=True)
class Estimate:
    queue_position: int | None = None
    estimated_start_at: str | None = None
    estimated_done_at: str | None = None


@dataclass(frozen=True)
class Lane:
    model: LaneModel
    workers: int
    busy_seconds: list[float]  # remaining work of each live worker's running job


def estimate(ctx: ApiContext, record: JobRecord) -> Estimate:
    if record.status.is_final:
        return Estimate()
    now = ctx.now()
    past_deadline = record.deadline_at is not None and _parse(record.deadline_at) <= now
    if record.status is JobStatus.QUEUED:
        position = jobs_ahead(ctx, record.lane.value, record.created_at)
        lane = None if past_deadline else lane_state(ctx, record.lane.value, now)
        if lane is None:
            return Estimate(queue_position=position)
        ahead = _ahead_seconds(ctx, lane.model, record, position, now)
        start = now + timedelta(seconds=start_after(lane.busy_seconds, ahead, lane.workers))
        seconds = lane.model.job_seconds(record.expected_frames)
        return Estimate(
            queue_position=position,
            estimated_start_at=iso(start),
            estimated_done_at=iso(start + timedelta(seconds=seconds)),
        )
    model = None if past_deadline else lane_model(ctx, record.lane.value)
    if model is None:
        return Estimate()
    remaining = model.remaining_seconds(
        frames_total=record.frames_total,
        frames_done=record.frames_done,
        expected_frames=record.expected_frames,
        seconds_running=max(0.0, (now - _parse(record.updated_at)).total_seconds()),
    )
    return Estimate(estimated_done_at=iso(now + timedelta(seconds=remaining)))


def jobs_ahead(ctx: ApiContext, lane: str, created_at: str) -> int:
    count = 0
    for page in ctx.table.queued_before_pages(lane, created_at, Select="COUNT"):
        count += int(page.get("Count", 0))
    return count


def lane_model(ctx: ApiContext, lane: str) -> LaneModel | None:
    return _model(ctx.table.lane_stats(lane))


def lane_state(ctx: ApiContext, lane: str, now: datetime) -> Lane | None:
    item = ctx.table.lane_stats(lane)
    model = _model(item)
    if model is None or item is None:
        return None
    cutoff = now - WORKER_WINDOW
    live = [owner for owner, seen in (item.get("workers") or {}).items() if _parse(seen) >= cutoff]
    running = item.get("running") or {}
    job_ids = [str(running[owner]["job_id"]) for owner in live if owner in running]
    busy = []
    for job in _records(ctx, job_ids):
        if job.status in (JobStatus.PREPARING, JobStatus.RENDERING):
            seconds_running = max(0.0, (now - _parse(job.updated_at)).total_seconds())
            busy.append(
                model.remaining_seconds(
                    frames_total=job.frames_total,
                    frames_done=job.frames_done,
                    expected_frames=job.expected_frames,
                    seconds_running=seconds_running,
                )
            )
    return Lane(model=model, workers=max(1, len(live)), busy_seconds=busy)


def _ahead_seconds(
    ctx: ApiContext, model: LaneModel, record: JobRecord, position: int, now: datetime
) -> list[float]:
    """Each job ahead's expected time, in queue order (the first `DETAILED_AHEAD` by their own
    frames and deadlines, any beyond that at the lane's mean)."""
    keys: list[str] = []
    for page in ctx.table.queued_before_pages(record.lane.value, record.created_at):
        keys += [str(item[JobsTable.PARTITION_KEY]) for item in page.get("Items", [])]
        if len(keys) >= DETAILED_AHEAD:
            break
    keys = keys[:DETAILED_AHEAD]
    by_id = {job.job_id: job for job in _records(ctx, [k.removeprefix("JOB#") for k in keys])}
    seconds = []
    for key in keys:
        job = by_id.get(key.removeprefix("JOB#"))
        if job is None or job.status is not JobStatus.QUEUED:
            continue  # taken or ended since the index was written
        if job.deadline_at is not None and _parse(job.deadline_at) <= now:
            seconds.append(0.0)  # expired on receipt, without GPU work
        else:
            seconds.append(model.job_seconds(job.expected_frames))
    seconds += [model.mean_job_seconds] * max(0, position - len(keys))
    return seconds


def _records(ctx: ApiContext, job_ids: Iterable[str]) -> list[JobRecord]:
    return [JobRecord.from_item(item) for item in ctx.table.job_items(job_ids)]


def _model(item: dict[str, Any] | None) -> LaneModel | None:
    if not item:
        return None
    samples = [
        (int(s["frames"]), float(s["seconds"])) for s in (item.get("samples") or {}).values()
    ]
    return fit(samples)


def _parse(moment: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(moment))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
