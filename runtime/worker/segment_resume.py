"""A render's segments in the outputs bucket: resuming after them, and the live preview.

Each segment is uploaded as the engine finishes it and recorded on the job; a later attempt of the
same render (same content hash, segment size and encoding) downloads them and starts after the
last one. The preview playlist is rewritten as each segment lands, so players see the render
grow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common.jobs import JobMessage
from runtime.common.keys import segment_key
from runtime.common.preview import PREVIEW_TAGGING, write_playlist
from runtime.common.records import JobRecord
from runtime.common.render_files import delete_render_files, delete_segments_from
from runtime.engine.engine_contract import (
    Segment,
    SegmentPlan,
    SyncSums,
    segment_count,
    segment_file_name,
)
from runtime.worker.config import WorkerSettings
from runtime.worker.job_store import JobStore, Lease, LeaseLost
from runtime.worker.shutdown import StopPolicy
from runtime.worker.telemetry import logger

SYNC_SUMS_METADATA = "sync-sums"  # S3 user metadata of a segment: its sync-score sums (JSON)


def sync_sums_json(sums: SyncSums) -> str:
    """Compact JSON for S3 user metadata (2 KB a object: 31 offsets of repr floats fit)."""
    return json.dumps({"s": list(sums.similarity), "n": sums.windows}, separators=(",", ":"))


def parse_sync_sums(stored: str) -> SyncSums | None:
    """The sums kept with a segment; None (no score from it) when unreadable."""
    try:
        value = json.loads(stored)
        return SyncSums(tuple(float(v) for v in value["s"]), int(value["n"]))
    except (ValueError, KeyError, TypeError):
        logger.warning("unreadable sync sums on a segment; the score leaves it out")
        return None


class RenderSegments:
    """Plans a render's segments (resuming after an earlier attempt's), uploads each with its
    preview, and deletes them when no output or preview needs them."""

    def __init__(
        self, *, settings: WorkerSettings, s3: Any, store: JobStore, stop: StopPolicy
    ) -> None:
        self._settings = settings
        self._s3 = s3
        self._store = store
        self._stop = stop

    def plan(
        self,
        message: JobMessage,
        lease: Lease,
        record: JobRecord,
        content_hash: str,
        directory: Path,
        *,
        encoding: str,
    ) -> SegmentPlan:
        """Render in segments, each uploaded as it finishes; start after the segments an earlier
        attempt left for this same render (same content hash, segment size and `encoding`, the
        engine's `output_encoding`: NVENC and each x264 preset write different stream
        parameters, and the mp4 joins the segments as they are under the first one's), if
        any."""
        size = self._settings.segment_frames
        directory.mkdir(parents=True, exist_ok=True)
        done = record.segments_done or 0
        if done and (
            record.segments_hash != content_hash
            or record.segment_frames != size
            or record.segments_encoding != encoding
        ):
            logger.info(
                "segments of another render or encoding found; starting over",
                extra={"segments_encoding": record.segments_encoding, "encoding": encoding},
            )
            self.delete(message, done)
            self._store.reset_segments(lease)
            done = 0
        done, sums_before = self._download_done(message, directory, done)
        preview_logged = record.preview_ready_at is not None

        def on_segment(segment: Segment) -> None:
            nonlocal preview_logged
            key = segment_key(message.tenant, message.job_id, segment.index)
            extra: dict[str, Any] = {"ContentType": "video/mp2t", "Tagging": PREVIEW_TAGGING}
            if segment.sync_sums is not None:  # kept with the segment for a resumed score
                extra["Metadata"] = {SYNC_SUMS_METADATA: sync_sums_json(segment.sync_sums)}
            self._s3.upload_file(
                str(segment.path), self._settings.outputs_bucket, key, ExtraArgs=extra
            )
            try:
                self._store.segment_done(
                    lease,
                    segments_done=segment.index + 1,
                    segment_frames=size,
                    content_hash=content_hash,
                    encoding=encoding,
                    fps=segment.fps,
                )
                if not preview_logged:
                    self._store.mark_preview_ready(lease)
                    preview_logged = True
                self._write_preview(message, segment, size)
            except LeaseLost:
                # Cancelled (maybe purged, so this upload came after the purge's delete): drop
                # it. Taken over by another worker: leave it, it is that worker's segment too.
                current = self._store.get(message.job_id)
                if current is None or current.status.is_final:
                    self._s3.delete_object(Bucket=self._settings.outputs_bucket, Key=key)
                self._stop.lease_lost()  # the engine stops at its next should_stop check
                raise

        return SegmentPlan(
            directory=directory,
            frames_per_segment=size,
            start_frame=done * size,
            on_segment=on_segment,
            encoders=self._settings.segment_encoders,
            sync_sums_before=sums_before,
        )

    def delete(self, message: JobMessage, count: int) -> None:
        """Segments and the preview playlist of a render no output or preview needs."""
        if not delete_render_files(
            self._s3, self._settings.outputs_bucket, message.tenant, message.job_id, segments=count
        ):
            logger.warning("could not delete the render's segments; their lifecycle rule will")

    def drop_past(self, message: JobMessage, earlier: JobRecord, frames: int) -> None:
        """After a checked render of `frames`: delete what the `earlier` attempt (the record
        `plan` was given) left past this render's last segment; started over with another
        segment size or render, it may have had more. Best effort: logged, the lifecycle rule
        removes what stays."""
        recorded = earlier.segments_done or 0
        end = recorded + 1  # the earlier attempt's last may be uploaded but not yet recorded
        first = segment_count(frames, self._settings.segment_frames)
        if not recorded or first >= end:
            return
        extra = {"first_segment": first, "end_segment": end}
        if delete_segments_from(
            self._s3,
            self._settings.outputs_bucket,
            message.tenant,
            message.job_id,
            first=first,
            end=end,
        ):
            logger.info("deleted an earlier attempt's segments past the render's last", extra=extra)
        else:
            logger.warning(
                "could not delete an earlier attempt's segments; their lifecycle rule will",
                extra=extra,
            )

    def _download_done(
        self, message: JobMessage, directory: Path, done: int
    ) -> tuple[int, SyncSums | None]:
        """The earlier attempt's segments into `directory`: how many are usable (up to the first
        missing one) and the sync-score sums kept with them."""
        sums_before: SyncSums | None = None
        for index in range(done):
            try:
                sums = self._download_segment(
                    segment_key(message.tenant, message.job_id, index),
                    directory / segment_file_name(index),
                )
            except ClientError as error:
                if not _is_missing(error):
                    raise
                logger.warning("segment missing; resuming before it", extra={"segment": index})
                return index, sums_before
            if sums is not None:
                sums_before = sums if sums_before is None else sums_before.plus(sums)
        return done, sums_before

    def _download_segment(self, key: str, path: Path) -> SyncSums | None:
        """An earlier attempt's segment to `path`; the sync-score sums kept with it, if any."""
        response = self._s3.get_object(Bucket=self._settings.outputs_bucket, Key=key)
        with path.open("wb") as file:
            shutil.copyfileobj(response["Body"], file)
        stored = response.get("Metadata", {}).get(SYNC_SUMS_METADATA)
        return None if stored is None else parse_sync_sums(stored)

    def _write_preview(self, message: JobMessage, segment: Segment, segment_frames: int) -> None:
        """Rewrite the preview playlist to end at `segment`: players poll the playlist, not the
        status, so it must be current as segments land. Best effort: a failed write leaves the
        previous listing, and the next segment (or a status read) rewrites it."""
        try:
            write_playlist(
                self._s3,
                bucket=self._settings.outputs_bucket,
                tenant=message.tenant,
                job_id=message.job_id,
                segments_done=segment.index + 1,
                segment_frames=segment_frames,
                fps=segment.fps,
                frames_total=self._stop.frames_total,
                expiry_seconds=self._settings.limits.download_url_expiry_seconds,
            )
        except (ClientError, BotoCoreError):
            logger.warning("could not write the preview playlist", extra={"segment": segment.index})


def _is_missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}
