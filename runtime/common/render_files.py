"""A render's segments and preview playlist in the outputs bucket, past the render itself.

After `SUCCEEDED` they stay: the preview plays to its last frame for `PREVIEW_GRACE_SECONDS`,
and the bucket's lifecycle rule on their tag (`runtime.common.preview`) expires them. A job that
ends without an output (failed by the worker or the dead-letter handler, cancelled by its caller
or its deadline, expired after an earlier attempt, purged) has no preview to finish, so its files
go at once; so do an interrupted attempt's segments once an output-cache hit makes them useless,
and those of a longer earlier attempt past a finished render's last segment.
Every deletion is under the job's own segments prefix (`job_segments_prefix`).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common.keys import job_segments_prefix, preview_playlist_key, segment_key

DELETE_BATCH = 1000  # DeleteObjects takes 1000 keys a call


def delete_render_files(
    s3: Any, bucket: str, tenant: str, job_id: str, *, segments: int | None
) -> bool:
    """Delete the job's segments and playlist; False if any stayed (the caller logs it; the
    lifecycle rule removes stragglers). `segments` is how many to delete, 0..segments-1, for a
    caller that may not list the bucket (the worker, the dead-letter handler): the job record's
    count, plus one for a segment uploaded but not yet recorded. None lists the prefix instead
    and deletes whatever is there (erasure). Missing keys are no error."""
    if segments is None:
        try:
            keys = _listed(s3, bucket, job_segments_prefix(tenant, job_id))
        except (ClientError, BotoCoreError):
            return False
    else:
        keys = [segment_key(tenant, job_id, index) for index in range(segments)]
        keys.append(preview_playlist_key(tenant, job_id))
    return _deleted(s3, bucket, keys)


def delete_segments_from(
    s3: Any, bucket: str, tenant: str, job_id: str, *, first: int, end: int
) -> bool:
    """Delete segments first..end-1 only, keeping those before and the playlist: what an
    earlier, longer attempt left past a shorter render's last segment (a listing of the prefix
    would otherwise find them). False if any stayed."""
    return _deleted(s3, bucket, [segment_key(tenant, job_id, i) for i in range(first, end)])


def _deleted(s3: Any, bucket: str, keys: list[str]) -> bool:
    """DeleteObjects in batches; False if a call failed or any key stayed."""
    failed = 0
    try:
        for start in range(0, len(keys), DELETE_BATCH):
            response = s3.delete_objects(
                Bucket=bucket,
                Delete={
                    "Objects": [{"Key": key} for key in keys[start : start + DELETE_BATCH]],
                    "Quiet": True,
                },
            )
            # Per-key failures (AccessDenied, ...) come back in the response, not as an error.
            failed += len(response.get("Errors", []))
    except (ClientError, BotoCoreError):
        return False
    return failed == 0


def _listed(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(str(item["Key"]) for item in page.get("Contents", []))
    return keys
