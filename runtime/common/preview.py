"""The live preview's HLS playlist: one builder for the two writers.

Players fetch playlists and segments without custom headers, so every entry is a presigned S3
URL and the playlist itself is an S3 object behind a presigned URL. Players poll the playlist
object, not the job's status, so the worker rewrites it as each segment lands (the preview is
current without anyone reading the status), and the API rewrites it on a status read (fresh
signatures, so the entries live as long as the playlist link it hands out). Both call
`write_playlist`; the last writer wins and both write the same listing of the same segments.
Never log the URLs: their signatures grant access.

After `SUCCEEDED` the preview stays playable for `PREVIEW_GRACE_SECONDS` (a player behind the
live edge plays on to `#EXT-X-ENDLIST`); every preview object carries the `PREVIEW_TAG` tag, and
the outputs bucket's lifecycle rule `PREVIEW_EXPIRY_RULE` deletes tagged objects
`PREVIEW_EXPIRE_DAYS` after they were written (local mode applies the same rule itself:
`runtime.local.lifecycle`).
"""

from __future__ import annotations

import math
from typing import Any

from runtime.common.keys import preview_playlist_key, segment_key

PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
# How long after SUCCEEDED the status still hands out the preview (its links expire then).
PREVIEW_GRACE_SECONDS = 600
# Segments and playlists are tagged so one lifecycle rule can expire them (S3 rules cannot match
# `tenants/*/jobs/*/segments/`): the smallest lifecycle expiry, a day after each object's write.
PREVIEW_TAG = ("musetalk-preview", "true")
PREVIEW_TAGGING = f"{PREVIEW_TAG[0]}={PREVIEW_TAG[1]}"  # the x-amz-tagging form of PutObject
PREVIEW_EXPIRE_DAYS = 1
PREVIEW_EXPIRY_RULE = "expire-previews"


def write_playlist(
    s3: Any,
    *,
    bucket: str,
    tenant: str,
    job_id: str,
    segments_done: int,
    segment_frames: int,
    fps: float,
    frames_total: int | None,
    expiry_seconds: int,
) -> str:
    """(Re)write the playlist of segments 0..segments_done-1, each as a presigned GET valid for
    `expiry_seconds`; the playlist's key. The signer needs s3:GetObject on the segments (a URL
    signed without it is refused) and s3:PutObject plus s3:PutObjectTagging on the playlist key
    only."""
    urls = [
        str(
            s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": bucket, "Key": segment_key(tenant, job_id, index)},
                ExpiresIn=expiry_seconds,
            )
        )
        for index in range(segments_done)
    ]
    key = preview_playlist_key(tenant, job_id)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=playlist(urls, segment_frames, fps, frames_total).encode(),
        ContentType=PLAYLIST_CONTENT_TYPE,
        CacheControl="no-store",
        Tagging=PREVIEW_TAGGING,  # a rewrite replaces the object's tags: tag every write
    )
    return key


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
