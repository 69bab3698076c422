"""A caller's cancel says who cancelled and how (the job's `error`), and leaves no segments or
preview playlist of an earlier attempt behind in the outputs bucket."""

from __future__ import annotations

from typing import Any

import boto3

from runtime.common.keys import preview_playlist_key, segment_key
from runtime.common.names import BucketRole, JobsTable
from runtime.local.resources import LocalResources
from tests.integration.api.conftest import Call, Submit


def test_a_cancelled_job_names_the_caller_in_its_error(
    call_api: Call, submit_job: Submit, deployment: LocalResources
) -> None:
    # Given a queued job
    job_id = submit_job("cancel-reason")["json"]["job_id"]
    # When its owner cancels it
    assert call_api("DELETE", f"/v1/jobs/{job_id}")["statusCode"] == 200
    # Then its status says it was cancelled by the caller, and which key did it
    status = call_api("GET", f"/v1/jobs/{job_id}")["json"]
    assert status["status"] == "CANCELLED"
    assert status["error"]["code"] == "CANCELLED_BY_CALLER"
    assert "key-a" in status["error"]["message"]
    assert "tenant-a" in status["error"]["message"]


def test_cancelling_a_handed_back_job_deletes_its_segments_and_playlist(
    call_api: Call, submit_job: Submit, deployment: LocalResources, aws: Any
) -> None:
    # Given a queued job an earlier attempt left two segments and a playlist for
    job_id = submit_job("cancel-cleanup")["json"]["job_id"]
    bucket = deployment.buckets[BucketRole.OUTPUTS]
    s3 = aws("s3")
    keys = [segment_key("tenant-a", job_id, i) for i in range(2)]
    keys.append(preview_playlist_key("tenant-a", job_id))
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"ts")
    table = boto3.resource("dynamodb", endpoint_url=deployment.endpoint_url).Table(
        deployment.names.jobs_table
    )
    table.update_item(
        Key={JobsTable.PARTITION_KEY: f"JOB#{job_id}"},
        UpdateExpression="SET segments_done = :two, segment_frames = :size",
        ExpressionAttributeValues={":two": 2, ":size": 50},
    )
    # When it is cancelled (not purged)
    assert call_api("DELETE", f"/v1/jobs/{job_id}")["statusCode"] == 200
    # Then nothing of the render is left in the outputs bucket
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"tenants/tenant-a/jobs/{job_id}/")
    assert listed.get("KeyCount", 0) == 0


def test_the_callers_reason_is_kept_and_bad_reasons_are_refused_naming_the_field(
    call_api: Call, submit_job: Submit, deployment: LocalResources
) -> None:
    # Given a queued job
    job_id = submit_job("cancel-why")["json"]["job_id"]
    # When a reason is not printable text, or too long, Then nothing happens and `reason` is named
    for bad in ("line\nbreak", "x" * 201):
        refused = call_api("DELETE", f"/v1/jobs/{job_id}", query={"reason": bad})
        assert refused["statusCode"] == 400, refused["json"]
        assert refused["json"]["error"]["field"] == "reason"
    assert call_api("GET", f"/v1/jobs/{job_id}")["json"]["status"] == "QUEUED"
    # When its owner cancels it saying why
    cancelled = call_api("DELETE", f"/v1/jobs/{job_id}", query={"reason": "wrong avatar"})
    assert cancelled["statusCode"] == 200
    # Then the error says who and why
    error = call_api("GET", f"/v1/jobs/{job_id}")["json"]["error"]
    assert error["code"] == "CANCELLED_BY_CALLER"
    assert error["message"].endswith(": wrong avatar")
