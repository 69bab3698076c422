"""Live preview: an HLS playlist of a rendering job's finished segments, built on each read.

Why here (the API, on `GET /v1/jobs/{id}`) rather than by the worker: players fetch playlists
and segments without custom headers, so both must be presigned S3 URLs, and the API is already
the one place that mints short-lived links (the worker would sign with task credentials that
rotate under it). The playlist is an S3 object rewritten on each status read with fresh segment
URLs, so every link in it lives as long as the playlist's own URL. `#EXT-X-ENDLIST` appears once
every segment exists. Never log the URLs.
"""

from __future__ import annotations

import math
from datetime import timedelta

from runtime.api.context import ApiContext, iso
from runtime.common.jobs import JobStatus
from runtime.common.keys import preview_playlist_key, segment_key
from runtime.common.records import JobRecord

PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"


def preview_link(ctx: ApiContext, record: JobRecord) -> tuple[str | None, str | None]:
    """(presigned playlist URL, its expiry) while RENDERING with a segment; else (None, None)."""
    done = record.segments_done or 0
    if record.status is not JobStatus.RENDERING or done == 0:
        return None, None
    if not record.segment_frames or not record.fps:
        return None, None
    expiry = ctx.settings.limits.download_url_expiry_seconds
    bucket = ctx.settings.outputs_bucket
    urls = [
        str(
            ctx.s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": segment_key(record.tenant, record.job_id, i)},
                ExpiresIn=expiry,
            )
        )
        for i in range(done)
    ]
    key = preview_playlist_key(record.tenant, record.job_id)
    ctx.s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=playlist(urls, record.segment_frames, record.fps, record.frames_total).encode(),
        ContentType=PLAYLIST_CONTENT_TYPE,
        CacheControl="no-store",
    )
    url = ctx.s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expiry
    )
    return str(url), iso(ctx.now() + timedelta(seconds=expiry))


def playlist(
    segment_urls: list[str], segment_frames: int, fps: float, frames_total: int | None
) -> str:
    """An HLS v3 EVENT playlist of `segment_urls` (segments 0..n-1, `segment_frames` each; the
    last one shorter when `frames_total` says so); ENDLIST once they cover `frames_total`."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-PLAYLIST-TYPE:EVENT",
        f"#EXT-X-TARGETDURATION:{math.ceil(segment_frames / fps)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
    ]
    for index, url in enumerate(segment_urls):
        frames = segment_frames
        if frames_total is not None:
            frames = min(segment_frames, frames_total - index * segment_frames)
        lines += [f"#EXTINF:{frames / fps:.3f},", url]
    if frames_total is not None and len(segment_urls) * segment_frames >= frames_total:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
