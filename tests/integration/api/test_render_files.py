"""The one deletion of a job's render files (worker, API, dead-letter handler): by count without
listing, or by listing the job's segments prefix, never past that prefix, and a failure is
reported rather than raised."""

from __future__ import annotations

from typing import Any

from runtime.common.keys import job_segments_prefix, output_key, preview_playlist_key, segment_key
from runtime.common.names import BucketRole
from runtime.common.render_files import delete_render_files
from runtime.local.resources import LocalResources


def _put(s3: Any, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"ts")


def _left(s3: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_by_count_deletes_the_counted_segments_and_playlist_only(
    deployment: LocalResources, aws: Any
) -> None:
    s3, bucket = aws("s3"), deployment.buckets[BucketRole.OUTPUTS]
    segments = [segment_key("t1", "job1", index) for index in range(4)]
    _put(s3, bucket, [*segments, preview_playlist_key("t1", "job1"), output_key("t1", "job1")])
    # Three counted: segments 0-2 and the playlist go; segment 3 (never counted) and the
    # output, outside the segments prefix, stay
    assert delete_render_files(s3, bucket, "t1", "job1", segments=3)
    assert _left(s3, bucket, "tenants/t1/") == sorted([segments[3], output_key("t1", "job1")])


def test_by_listing_deletes_whatever_the_prefix_holds_and_nothing_beside_it(
    deployment: LocalResources, aws: Any
) -> None:
    s3, bucket = aws("s3"), deployment.buckets[BucketRole.OUTPUTS]
    prefix = job_segments_prefix("t1", "job2")
    kept = [output_key("t1", "job2"), segment_key("t1", "job22", 0), segment_key("t2", "job2", 0)]
    _put(s3, bucket, [*(segment_key("t1", "job2", i) for i in (0, 7, 40)), f"{prefix}x", *kept])
    assert delete_render_files(s3, bucket, "t1", "job2", segments=None)
    assert _left(s3, bucket, prefix) == []
    assert _left(s3, bucket, "tenants/") == sorted(kept)


def test_a_failed_deletion_is_reported_not_raised(aws: Any, deployment: LocalResources) -> None:
    s3 = aws("s3")
    assert not delete_render_files(s3, "no-such-bucket-here", "t1", "job3", segments=2)
    assert not delete_render_files(s3, "no-such-bucket-here", "t1", "job3", segments=None)
