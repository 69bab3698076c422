"""Queue position and ETA against a simulated backlog: QUEUED jobs ahead in the lane (other lanes
and running jobs do not count), the lane's recent render rates, and the workers seen lately."""

from __future__ import annotations

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
from runtime.worker.job_store import JobStore, iso
from tests.integration.api.conftest import Call, Upload, submit_body


def _table(deployment: LocalResources) -> Any:
    return boto3.resource("dynamodb", endpoint_url=deployment.endpoint_url).Table(
        deployment.names.jobs_table
    )


def _job(table: Any, *, lane: Lane, status: JobStatus, created_at: str, **fields: Any) -> str:
    job_id = "job_" + uuid.uuid4().hex
    ref = MediaRef(bucket="b", key="tenants/tenant-a/uploads/u/f")
    record = JobRecord(
        job_id=job_id,
        tenant="tenant-a",
        lane=lane,
        status=status,
        created_at=created_at,
        updated_at=created_at,
        correlation_id="c",
        avatar_id="av",
        avatar=ref,
        audio=ref,
        queued_lane=lane.value if status is JobStatus.QUEUED else None,
        **fields,
    )
    table.put_item(Item=record.to_item())
    return job_id


def _lane_rates(table: Any, lane: Lane, *, workers_now: int, stale_workers: int) -> None:
    """Four renders of 250 frames in 10 s each (0.04 s/frame, 10 s per job)."""
    now = datetime.now(UTC)
    workers = {f"w{i}": iso(now) for i in range(workers_now)}
    workers |= {f"old{i}": iso(now - timedelta(hours=1)) for i in range(stale_workers)}
    table.put_item(
        Item={
            JobsTable.PARTITION_KEY: lane_stats_pk(lane.value),
            "samples": {
                f"s{i}": {"frames": 250, "seconds": Decimal(10), "at": iso(now)} for i in range(4)
            },
            "workers": workers,
        }
    )


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture
def backlog(deployment: LocalResources) -> list[str]:
    """Five QUEUED interactive jobs submitted a minute ago, plus jobs that must not count."""
    table = _table(deployment)
    earlier = datetime.now(UTC) - timedelta(minutes=1)
    ahead = [
        _job(
            table,
            lane=Lane.INTERACTIVE,
            status=JobStatus.QUEUED,
            created_at=iso(earlier + timedelta(seconds=i)),
        )
        for i in range(5)
    ]
    _job(table, lane=Lane.BATCH, status=JobStatus.QUEUED, created_at=iso(earlier))
    _job(table, lane=Lane.INTERACTIVE, status=JobStatus.RENDERING, created_at=iso(earlier))
    return ahead


def test_a_new_job_learns_its_position_and_eta_from_the_backlog_and_rates(
    call_api: Call,
    upload: Upload,
    deployment: LocalResources,
    backlog: list[str],
    short_wav: bytes,
    face_png: bytes,
) -> None:
    # Given five jobs ahead in the lane, 0.04 s per frame, two live workers (and a stale one)
    _lane_rates(_table(deployment), Lane.INTERACTIVE, workers_now=2, stale_workers=1)

    # When a job with 2 s of audio (50 frames at 25 fps) is submitted
    accepted = call_api(
        "POST",
        "/v1/jobs",
        body=submit_body(upload("audio", short_wav), avatar_upload_id=upload("image", face_png)),
        headers={"Idempotency-Key": "eta-1"},
    )

    # Then it is 6th in line (5 ahead); the 10 s jobs ahead are dealt to the two workers (3 and
    # 2), so one is free after 20 s; it takes 50 x 0.04 s
    assert accepted["statusCode"] == 202, accepted["json"]
    body = accepted["json"]
    assert body["queue_position"] == 5
    start, done = _at(body["estimated_start_at"]), _at(body["estimated_done_at"])
    assert done - start == timedelta(seconds=2)
    assert abs((start - datetime.now(UTC)).total_seconds() - 20) < 3
    # And once workers took the jobs ahead, the status says it is next, starting about now
    store = JobStore(_table(deployment))
    for job_id in backlog:
        assert store.acquire(job_id, owner="w0", message_id="m", lease_seconds=60) is not None
    status = call_api("GET", f"/v1/jobs/{body['job_id']}")["json"]
    assert status["queue_position"] == 0
    assert abs((_at(status["estimated_start_at"]) - datetime.now(UTC)).total_seconds()) < 5


def test_without_rates_the_position_is_given_and_the_times_are_null(
    call_api: Call, deployment: LocalResources, backlog: list[str]
) -> None:
    # Given a backlog but no finished render in the lane yet
    table = _table(deployment)
    job_id = _job(
        table, lane=Lane.INTERACTIVE, status=JobStatus.QUEUED, created_at=iso(datetime.now(UTC))
    )
    # When its status is read
    status = call_api("GET", f"/v1/jobs/{job_id}")["json"]
    # Then only the position is known
    assert status["queue_position"] == 5
    assert status["estimated_start_at"] is None
    assert status["estimated_done_at"] is None


def test_a_rendering_job_is_estimated_from_its_remaining_frames(
    call_api: Call, deployment: LocalResources
) -> None:
    # Given a job halfway through 200 frames in a lane rendering 0.04 s per frame
    table = _table(deployment)
    _lane_rates(table, Lane.INTERACTIVE, workers_now=1, stale_workers=0)
    job_id = _job(
        table,
        lane=Lane.INTERACTIVE,
        status=JobStatus.RENDERING,
        created_at=iso(datetime.now(UTC)),
        frames_done=100,
        frames_total=200,
    )
    # When its status is read, Then it is done in about 100 x 0.04 s, with no queue position
    status = call_api("GET", f"/v1/jobs/{job_id}")["json"]
    assert status["queue_position"] is None
    assert abs((_at(status["estimated_done_at"]) - datetime.now(UTC)).total_seconds() - 4) < 3
