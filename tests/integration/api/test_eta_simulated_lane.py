"""ETAs against a simulated lane: jobs of different lengths, a job already rendering on each
worker, a job ahead whose deadline passed. The lane is simulated (each job takes 2 s plus
0.04 s a frame, workers take the oldest job when free) and every queued job's ETA is compared
with when the simulation starts it."""

from __future__ import annotations

import heapq
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from runtime.common.jobs import JobStatus, MediaRef
from runtime.common.names import JobsTable, Lane
from runtime.common.records import JobRecord, lane_stats_pk
from runtime.local.resources import LocalResources
from runtime.worker.job_store import iso
from tests.integration.api.conftest import Call

OVERHEAD, PER_FRAME = 2.0, 0.04


def true_seconds(frames: int) -> float:
    return OVERHEAD + frames * PER_FRAME


def _table(deployment: LocalResources) -> Any:
    return boto3.resource("dynamodb", endpoint_url=deployment.endpoint_url).Table(
        deployment.names.jobs_table
    )


def _job(table: Any, status: JobStatus, created_at: datetime, **fields: Any) -> str:
    job_id = "job_" + uuid.uuid4().hex
    ref = MediaRef(bucket="b", key="tenants/tenant-a/uploads/u/f")
    record = JobRecord(
        job_id=job_id,
        tenant="tenant-a",
        lane=Lane.INTERACTIVE,
        status=status,
        created_at=iso(created_at),
        updated_at=iso(fields.pop("updated_at", created_at)),
        correlation_id="c",
        avatar_id="av",
        avatar=ref,
        audio=ref,
        queued_lane=Lane.INTERACTIVE.value if status is JobStatus.QUEUED else None,
        **fields,
    )
    table.put_item(Item=record.to_item())
    return job_id


def _lane(table: Any, now: datetime, running: dict[str, str]) -> None:
    """Render samples of 100..600 frames that took 2 s + 0.04 s a frame; the workers running."""
    table.put_item(
        Item={
            JobsTable.PARTITION_KEY: lane_stats_pk(Lane.INTERACTIVE.value),
            "samples": {
                f"s{i}": {
                    "frames": frames,
                    "seconds": Decimal(str(true_seconds(frames))),
                    "at": iso(now),
                }
                for i, frames in enumerate((100, 250, 400, 600))
            },
            "workers": {owner: iso(now) for owner in running},
            "running": {owner: {"job_id": job, "at": iso(now)} for owner, job in running.items()},
        }
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_every_queued_job_is_estimated_to_start_when_the_simulated_lane_starts_it(
    call_api: Call, deployment: LocalResources, workers: int
) -> None:
    # Given workers each rendering a job (750 and 300 frames left), and a queue of jobs of
    # different lengths, one of which has a deadline that passed (the worker expires it unstarted)
    table = _table(deployment)
    now = datetime.now(UTC)
    left = [750, 300][:workers]
    running = {
        f"w{i}": _job(
            table,
            JobStatus.RENDERING,
            now - timedelta(minutes=5),
            frames_total=1000,
            frames_done=1000 - frames,
        )
        for i, frames in enumerate(left)
    }
    _lane(table, now, running)
    frames = [1500, 100, 400, 900, 50]
    queued = []
    for i, count in enumerate(frames):
        deadline = iso(now - timedelta(seconds=1)) if i == 2 else None
        created = now - timedelta(minutes=1) + timedelta(seconds=i)
        queued.append(
            _job(table, JobStatus.QUEUED, created, expected_frames=count, deadline_at=deadline)
        )

    # When the simulated lane runs: workers free after their jobs, each takes the oldest job
    free = [frames_left * PER_FRAME for frames_left in left]
    heapq.heapify(free)
    starts: dict[str, float] = {}
    for i, (job_id, count) in enumerate(zip(queued, frames, strict=True)):
        at = heapq.heappop(free)
        starts[job_id] = at
        heapq.heappush(free, at + (0.0 if i == 2 else true_seconds(count)))

    # Then every queued job's ETA matches the simulation (start and done), to the second,
    # counted from when the API answered (setup on a loaded machine may take seconds)
    for i, (job_id, count) in enumerate(zip(queued, frames, strict=True)):
        asked = datetime.now(UTC)
        status = call_api("GET", f"/v1/jobs/{job_id}")["json"]
        answered = datetime.now(UTC)
        assert status["queue_position"] == i
        if i == 2:  # past its deadline: no estimate
            assert (status["estimated_start_at"], status["estimated_done_at"]) == (None, None)
            continue
        start = datetime.fromisoformat(status["estimated_start_at"])
        done = datetime.fromisoformat(status["estimated_done_at"])
        earliest = asked + timedelta(seconds=starts[job_id] - 0.5)
        latest = answered + timedelta(seconds=starts[job_id] + 0.5)
        assert earliest <= start <= latest, (i, status)
        assert abs((done - start).total_seconds() - true_seconds(count)) < 0.5, (i, status)


def test_a_running_job_past_its_deadline_gets_no_estimate(
    call_api: Call, deployment: LocalResources
) -> None:
    table = _table(deployment)
    now = datetime.now(UTC)
    job_id = _job(
        table,
        JobStatus.RENDERING,
        now,
        frames_total=1000,
        frames_done=100,
        deadline_at=iso(now - timedelta(seconds=1)),
    )
    _lane(table, now, {"w0": job_id})
    status = call_api("GET", f"/v1/jobs/{job_id}")["json"]
    assert status["estimated_done_at"] is None
