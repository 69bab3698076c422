"""Live preview link: the HLS playlist of a rendering job's finished segments.

The worker rewrites the playlist object as each segment lands, so a player polling it stays
current; the status read rewrites it too (`runtime.common.preview.write_playlist`, the one
builder), with fresh signatures, so every entry lives as long as the playlist link handed out
here. `#EXT-X-ENDLIST` appears once every segment exists. After `SUCCEEDED` the link is still
handed out for `PREVIEW_GRACE_SECONDS`, signed to expire when the grace ends, so a player behind
the live edge plays to the last frame. Never log the URLs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from runtime.api.context import ApiContext, iso
from runtime.common.jobs import JobStatus
from runtime.common.preview import PREVIEW_GRACE_SECONDS, write_playlist
from runtime.common.records import JobRecord


def preview_link(ctx: ApiContext, record: JobRecord) -> tuple[str | None, str | None]:
    """(presigned playlist URL, its expiry) while RENDERING with a segment, or SUCCEEDED less
    than the grace ago; else (None, None)."""
    done = record.segments_done or 0
    if done == 0 or not record.segment_frames or not record.fps:
        return None, None
    expiry = ctx.settings.limits.download_url_expiry_seconds
    if record.status is JobStatus.SUCCEEDED:
        expiry = min(expiry, _grace_left(ctx, record))
    elif record.status is not JobStatus.RENDERING:
        return None, None
    if expiry <= 0:
        return None, None
    bucket = ctx.settings.outputs_bucket
    key = write_playlist(
        ctx.s3,
        bucket=bucket,
        tenant=record.tenant,
        job_id=record.job_id,
        segments_done=done,
        segment_frames=record.segment_frames,
        fps=record.fps,
        frames_total=record.frames_total,
        expiry_seconds=expiry,
    )
    url = ctx.s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expiry
    )
    return str(url), iso(ctx.now() + timedelta(seconds=expiry))


def _grace_left(ctx: ApiContext, record: JobRecord) -> int:
    """Whole seconds of the preview's grace left (`updated_at` is the success: no status change
    follows it)."""
    try:
        succeeded = datetime.fromisoformat(record.updated_at)
    except ValueError:
        return 0
    ends = succeeded + timedelta(seconds=PREVIEW_GRACE_SECONDS)
    return int((ends - ctx.now()).total_seconds())
