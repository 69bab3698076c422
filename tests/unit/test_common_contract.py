"""The shared contract rejects what neither side may accept."""

import pytest
from pydantic import ValidationError

from runtime.common import keys
from runtime.common.completion import completion_event
from runtime.common.jobs import AvatarOptions, ErrorCode, JobStatus, MediaRef
from runtime.common.names import BucketRole, Lane, ResourceNames
from runtime.common.records import JobRecord


def test_bbox_shift_outside_documented_range_is_rejected() -> None:
    with pytest.raises(ValidationError) as raised:
        AvatarOptions(bbox_shift=41)
    assert raised.value.errors()[0]["loc"] == ("bbox_shift",)


def test_bbox_shift_must_be_an_integer_not_a_string() -> None:
    with pytest.raises(ValidationError):
        AvatarOptions.model_validate({"bbox_shift": "3"})


def test_unknown_option_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        AvatarOptions.model_validate({"bbox_shift": 0, "surprise": 1})


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 65, "a.b"])
def test_keys_refuse_path_tricks(bad: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        keys.upload_key("tenant-a", bad, "audio")


def test_upload_keys_stay_inside_the_tenant_prefix() -> None:
    key = keys.upload_key("tenant-a", "u1", "audio")
    assert key.startswith(keys.tenant_prefix("tenant-a"))


def test_final_statuses_and_permanent_errors() -> None:
    assert JobStatus.SUCCEEDED.is_final
    assert not JobStatus.RENDERING.is_final
    assert ErrorCode.NO_FACE.is_permanent
    assert not ErrorCode.OUT_OF_MEMORY.is_permanent


def test_names_are_distinct_per_stage_and_lane() -> None:
    dev = ResourceNames(stage="dev", account="123456789012", region="us-east-1")
    prod = ResourceNames(stage="prod", account="123456789012", region="us-east-1")
    assert dev.queue(Lane.BATCH) != dev.queue(Lane.INTERACTIVE)
    assert dev.bucket(BucketRole.UPLOADS) != prod.bucket(BucketRole.UPLOADS)
    assert dev.dead_letter_queue(Lane.BATCH).endswith("-dlq")


def test_job_record_round_trips_through_a_dynamodb_item() -> None:
    from decimal import Decimal

    from runtime.common.jobs import MediaRef, StageTimings
    from runtime.common.records import JobRecord

    record = JobRecord(
        job_id="j1",
        tenant="tenant-a",
        lane=Lane.BATCH,
        status=JobStatus.RENDERING,
        created_at="2026-11-26T11:00:00Z",
        updated_at="2026-11-26T11:00:01Z",
        correlation_id="c1",
        avatar_id="a1",
        avatar=MediaRef(bucket="b", key="tenants/tenant-a/uploads/u1/video"),
        audio=MediaRef(bucket="b", key="tenants/tenant-a/uploads/u2/audio"),
        progress=0.5,
        timings=StageTimings(prepare_ms=12.5),
    )
    item = record.to_item()
    assert item["pk"] == "JOB#j1"
    assert item["tenant_kind"] == "tenant-a#job"
    assert item["progress"] == Decimal("0.5")
    assert "webhook_url" not in item  # None values are not stored
    assert JobRecord.from_item(item) == record


def _final_record(status: JobStatus, **fields: object) -> JobRecord:
    return JobRecord.model_validate(
        {
            "job_id": "j1",
            "tenant": "acme",
            "lane": Lane.BATCH,
            "status": status,
            "created_at": "2026-01-01T00:00:00.000Z",
            "updated_at": "2026-01-01T00:01:00.000Z",
            "correlation_id": "corr-1",
            "avatar_id": "av-1",
            "avatar": MediaRef(bucket="b", key="k/avatar"),
            "audio": MediaRef(bucket="b", key="k/audio"),
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("status", "event_type", "frames"),
    [
        (JobStatus.SUCCEEDED, "job.succeeded", 50),
        (JobStatus.FAILED, "job.failed", None),
        (JobStatus.CANCELLED, "job.cancelled", None),
    ],
)
def test_every_final_record_has_one_event_shape_whoever_finished_the_job(
    status: JobStatus, event_type: str, frames: int | None
) -> None:
    # Given a final record (the worker, the API's cancel and the DLQ handler all build from one)
    record = _final_record(status, frames_total=50, weights="something-else")
    # When its event is built
    event = completion_event(record)
    # Then type, frames (only for a success) and the finish time follow the record
    assert (event.type, event.status, event.frames) == (event_type, status, frames)
    assert event.finished_at == record.updated_at
    assert event.weights is None  # only "official", "custom" or "random" are in the contract


def test_a_job_that_is_not_final_has_no_completion_event() -> None:
    with pytest.raises(KeyError):
        completion_event(_final_record(JobStatus.RENDERING))
