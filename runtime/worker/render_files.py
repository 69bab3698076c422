"""A render's segments and preview playlist in the outputs bucket, past the render itself.

After `SUCCEEDED` they stay: the preview plays to its last frame for `PREVIEW_GRACE_SECONDS`,
and the bucket's lifecycle rule on their tag (`runtime.common.preview`) expires them. A job that
ends without an output (cancelled by its caller or its deadline, or expired after an earlier
attempt) has no preview to finish, so its files go at once; so do an interrupted attempt's
segments once an output-cache hit makes them useless.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common.keys import preview_playlist_key, segment_key
from runtime.worker.telemetry import logger

DELETE_BATCH = 1000  # DeleteObjects takes 1000 keys a call


def delete_render_files(s3: Any, bucket: str, tenant: str, job_id: str, segments: int) -> None:
    """Delete segments 0..segments-1 and the playlist. The worker may not list the bucket, so
    the count comes from the job record (callers add one for a segment uploaded but not yet
    recorded); missing keys are no error. Best effort: the lifecycle rule removes stragglers."""
    keys = [segment_key(tenant, job_id, index) for index in range(segments)]
    keys.append(preview_playlist_key(tenant, job_id))
    try:
        for start in range(0, len(keys), DELETE_BATCH):
            s3.delete_objects(
                Bucket=bucket,
                Delete={
                    "Objects": [{"Key": key} for key in keys[start : start + DELETE_BATCH]],
                    "Quiet": True,
                },
            )
    except (ClientError, BotoCoreError):
        logger.warning("could not delete the render's segments; their lifecycle rule will")
