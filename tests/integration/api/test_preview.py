"""Live preview and resume fields on GET /v1/jobs/{id}: an HLS playlist of the finished segments
through presigned URLs while RENDERING; purge erases the segments."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from runtime.common.keys import job_segments_prefix, preview_playlist_key, segment_key
from runtime.common.names import BucketRole, JobsTable
from runtime.common.preview import PREVIEW_GRACE_SECONDS, PREVIEW_TAG
from runtime.common.records import job_pk
from runtime.local.resources import LocalResources
from runtime.worker.job_store import iso
from tests.integration.api.conftest import TENANTS, Call, Upload, submit_body
from tests.integration.api.test_logs import api_log_lines  # noqa: F401  # the fixture


def as_worker(
    aws: Callable[[str], Any], deployment: LocalResources, job_id: str, **values: Any
) -> None:
    """Write what a rendering worker writes on the record (status, progress, segments)."""
    table = aws("dynamodb")
    names = {f"#{k}": k for k in values}
    table.update_item(
        TableName=deployment.names.jobs_table,
        Key={JobsTable.PARTITION_KEY: {"S": job_pk(job_id)}},
        UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={f":{k}": _attr(v) for k, v in values.items()},
    )


def _attr(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        return {"S": value}
    return {"N": str(Decimal(str(value)))}


def _submitted(
    call_api: Call, upload: Upload, short_wav: bytes, face_png: bytes, idempotency_key: str
) -> str:
    """A job accepted for the sample speech and face: its id."""
    audio, face = upload("audio", short_wav), upload("image", face_png)
    accepted = call_api(
        "POST",
        "/v1/jobs",
        body=submit_body(audio, avatar_upload_id=face),
        headers={"Idempotency-Key": idempotency_key},
    )
    return str(accepted["json"]["job_id"])


def test_a_rendering_job_with_segments_has_a_playable_preview_until_it_is_done(
    call_api: Call,
    upload: Upload,
    short_wav: bytes,
    face_png: bytes,
    aws: Callable[[str], Any],
    deployment: LocalResources,
    api_log_lines: io.StringIO,  # noqa: F811  # the imported fixture
) -> None:
    # Given a job rendering 300 frames at 25 fps in segments of 125, two of them finished
    job_id = _submitted(call_api, upload, short_wav, face_png, "preview-1")
    tenant = TENANTS["key-a"]
    outputs = deployment.buckets[BucketRole.OUTPUTS]
    s3 = aws("s3")
    assert call_api("GET", f"/v1/jobs/{job_id}")["json"]["preview_url"] is None  # QUEUED
    for index in range(3):
        s3.put_object(Bucket=outputs, Key=segment_key(tenant, job_id, index), Body=b"ts%d" % index)
    as_worker(
        aws,
        deployment,
        job_id,
        status="RENDERING",
        segments_done=2,
        segment_frames=125,
        fps=25,
        frames_total=300,
        resumed_from_frame=125,
    )

    # When its owner reads the job
    job = call_api("GET", f"/v1/jobs/{job_id}")["json"]

    # Then it links an HLS EVENT playlist of the two segments, still open
    assert job["resumed_from_frame"] == 125
    assert job["preview_url_expires_at"] is not None
    playlist = httpx.get(job["preview_url"]).text
    lines = playlist.splitlines()
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-PLAYLIST-TYPE:EVENT"]
    assert "#EXT-X-TARGETDURATION:5" in lines
    assert [line for line in lines if line.startswith("#EXTINF")] == ["#EXTINF:5.000,"] * 2
    assert "#EXT-X-ENDLIST" not in lines
    # And each entry is a presigned URL of its segment
    entries = [line for line in lines if not line.startswith("#")]
    assert [httpx.get(url).content for url in entries] == [b"ts0", b"ts1"]

    # When the last (shorter) segment is finished
    as_worker(aws, deployment, job_id, segments_done=3)
    text = httpx.get(call_api("GET", f"/v1/jobs/{job_id}")["json"]["preview_url"]).text
    # Then the playlist lists it (2 s: 50 frames) and ends
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("#EXTINF")][-1] == "#EXTINF:2.000,"
    assert httpx.get(lines[-2]).content == b"ts2"
    assert lines[-1] == "#EXT-X-ENDLIST"

    # And no log line carries a playlist or segment URL (their signatures grant access)
    logged = api_log_lines.getvalue()
    assert job_id in logged  # the capture works: the access lines are there
    for url in [job["preview_url"], *entries]:
        assert parse_qs(urlsplit(url).query)["X-Amz-Signature"][0] not in logged
        assert urlsplit(url).path not in logged

    # When another tenant reads the job, it gets no preview (a 404)
    assert call_api("GET", f"/v1/jobs/{job_id}", api_key_id="key-b")["statusCode"] == 404

    # When the job is purged, the segments and the playlist are gone
    assert call_api("DELETE", f"/v1/jobs/{job_id}", query={"purge": "true"})["statusCode"] == 200
    listing = s3.list_objects_v2(Bucket=outputs, Prefix=job_segments_prefix(tenant, job_id))
    assert listing.get("KeyCount", 0) == 0


def test_a_succeeded_job_keeps_its_preview_for_the_grace_then_hands_out_none(
    call_api: Call,
    upload: Upload,
    short_wav: bytes,
    face_png: bytes,
    aws: Callable[[str], Any],
    deployment: LocalResources,
) -> None:
    # Given a job whose render just succeeded, all of its 3 segments written
    job_id = _submitted(call_api, upload, short_wav, face_png, "preview-grace")
    tenant = TENANTS["key-a"]
    outputs = deployment.buckets[BucketRole.OUTPUTS]
    s3 = aws("s3")
    for index in range(3):
        s3.put_object(Bucket=outputs, Key=segment_key(tenant, job_id, index), Body=b"ts%d" % index)
    succeeded = datetime.now(UTC)
    as_worker(
        aws,
        deployment,
        job_id,
        status="SUCCEEDED",
        segments_done=3,
        segment_frames=125,
        fps=25,
        frames_total=300,
        updated_at=iso(succeeded),
    )
    # When a player behind the live edge reads the status right after the success
    job = call_api("GET", f"/v1/jobs/{job_id}")["json"]
    # Then the preview is still there, complete, and its links end with the grace
    lines = httpx.get(job["preview_url"]).text.splitlines()
    assert lines[-1] == "#EXT-X-ENDLIST"
    entries = [line for line in lines if not line.startswith("#")]
    assert [httpx.get(url).content for url in entries] == [b"ts0", b"ts1", b"ts2"]
    ends = datetime.fromisoformat(job["preview_url_expires_at"])
    grace_end = succeeded + timedelta(seconds=PREVIEW_GRACE_SECONDS)
    assert abs((ends - grace_end).total_seconds()) <= 5
    # And the playlist carries the tag its lifecycle rule expires it by
    tags = s3.get_object_tagging(Bucket=outputs, Key=preview_playlist_key(tenant, job_id))
    assert {(t["Key"], t["Value"]) for t in tags["TagSet"]} == {PREVIEW_TAG}

    # When the grace is over
    as_worker(
        aws,
        deployment,
        job_id,
        updated_at=iso(succeeded - timedelta(seconds=PREVIEW_GRACE_SECONDS + 1)),
    )
    # Then the status hands out no preview
    job = call_api("GET", f"/v1/jobs/{job_id}")["json"]
    assert (job["preview_url"], job["preview_url_expires_at"]) == (None, None)


def test_a_purged_succeeded_job_hands_out_no_preview_during_the_grace(
    call_api: Call,
    upload: Upload,
    short_wav: bytes,
    face_png: bytes,
    aws: Callable[[str], Any],
    deployment: LocalResources,
) -> None:
    # Given a job that just succeeded, its segments still there for the preview's grace
    job_id = _submitted(call_api, upload, short_wav, face_png, "preview-purged")
    outputs = deployment.buckets[BucketRole.OUTPUTS]
    aws("s3").put_object(Bucket=outputs, Key=segment_key("tenant-a", job_id, 0), Body=b"ts0")
    as_worker(
        aws,
        deployment,
        job_id,
        status="SUCCEEDED",
        segments_done=1,
        segment_frames=125,
        fps=25,
        frames_total=50,
        updated_at=iso(datetime.now(UTC)),
    )
    assert call_api("GET", f"/v1/jobs/{job_id}")["json"]["preview_url"] is not None
    # When it is purged
    assert call_api("DELETE", f"/v1/jobs/{job_id}", query={"purge": "true"})["statusCode"] == 200
    # Then the status hands out no preview of the erased segments
    assert call_api("GET", f"/v1/jobs/{job_id}")["json"]["preview_url"] is None
