"""Local mode applies the buckets' lifecycle rules as S3 does: the live preview's tagged
segments and playlist expire at the first midnight UTC a day after they were written, other
outputs after the stage's retention, and nothing sooner."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from runtime.common.keys import output_key, preview_playlist_key, segment_key
from runtime.common.names import BucketRole
from runtime.common.preview import PREVIEW_TAGGING, write_playlist
from runtime.local.lifecycle import apply_expiry, expiry_date
from tests.support.moto_server import provision_stage


def test_previews_expire_a_day_after_their_write_and_outputs_after_the_retention(
    endpoint: str, session: Any
) -> None:
    # Given a stage's outputs bucket with a finished job's output, segment and playlist
    resources = provision_stage(endpoint, "lifecycle")
    s3 = session.client("s3", endpoint_url=endpoint)
    bucket = resources.buckets[BucketRole.OUTPUTS]
    output = output_key("acme", "job1")
    segment = segment_key("acme", "job1", 0)
    s3.put_object(Bucket=bucket, Key=output, Body=b"mp4")
    s3.put_object(Bucket=bucket, Key=segment, Body=b"ts", Tagging=PREVIEW_TAGGING)
    playlist = write_playlist(
        s3,
        bucket=bucket,
        tenant="acme",
        job_id="job1",
        segments_done=1,
        segment_frames=125,
        fps=25.0,
        frames_total=125,
        expiry_seconds=900,
    )
    assert playlist == preview_playlist_key("acme", "job1")
    written = s3.head_object(Bucket=bucket, Key=segment)["LastModified"]
    preview_expiry = expiry_date(written, 1)
    assert (preview_expiry.hour, preview_expiry.minute, preview_expiry.second) == (0, 0, 0)
    assert timedelta(days=1) <= preview_expiry - written < timedelta(days=2)

    # When the lifecycle runs within the day, or a day on but before the next midnight UTC:
    # nothing goes
    assert apply_expiry(s3, bucket, written + timedelta(hours=23)) == []
    assert apply_expiry(s3, bucket, preview_expiry - timedelta(seconds=1)) == []
    # When it runs at that midnight: the preview's objects go, the output stays
    assert sorted(apply_expiry(s3, bucket, preview_expiry)) == sorted([segment, playlist])
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == [output]
    # When the stage's retention has passed, rounded to its midnight: the output goes too
    retention = resources.config.outputs_expire_days
    output_expiry = expiry_date(
        s3.head_object(Bucket=bucket, Key=output)["LastModified"], retention
    )
    assert apply_expiry(s3, bucket, output_expiry - timedelta(seconds=1)) == []
    assert apply_expiry(s3, bucket, output_expiry) == [output]
