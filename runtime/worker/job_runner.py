"""One delivery of one job message, from lease to outcome.

The order of writes is what keeps jobs from being lost or rendered twice: take the lease first
(only one worker wins), render, write the output, record the final status fenced on the lease,
publish the event, and only then delete the message. A crash anywhere before the delete leaves
the message to come back; the lease, the output cache and `completion_pending` make the repeat
cheap and harmless.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from runtime.common.cost import estimated_cost_usd, read_instance_type
from runtime.common.jobs import (
    ErrorCode,
    JobError,
    JobMessage,
    JobStatus,
    MediaRef,
    StageTimings,
)
from runtime.common.keys import (
    output_key,
    rendered_cache_key,
    segment_key,
)
from runtime.common.metrics import Metric
from runtime.common.preview import PREVIEW_TAGGING, write_playlist
from runtime.common.records import JobRecord
from runtime.engine.interface import (
    Interrupted,
    LipSyncEngine,
    MediaError,
    OutOfMemory,
    ProgressFn,
    Rendered,
    Segment,
    SegmentPlan,
    SyncSums,
    segment_file_name,
)
from runtime.worker.avatar_cache import AvatarCache
from runtime.worker.cancellation import ended_elsewhere, settle_ended
from runtime.worker.config import WorkerSettings
from runtime.worker.gpu import GpuProbe
from runtime.worker.heartbeat import Heartbeat
from runtime.worker.inputs import (
    FetchedInput,
    check_audio,
    check_avatar,
    check_output,
    fetch_input,
)
from runtime.worker.isolated import shared_checks
from runtime.worker.job_store import JobStore, Lease, LeaseLost, Success, utc_now
from runtime.worker.lane_stats import LaneStats
from runtime.worker.lanes import Delivery, LanePoller
from runtime.worker.notifications import Notifier
from runtime.worker.protection import TaskProtection
from runtime.worker.refusals import decode_limits, refusals_as_media_errors
from runtime.worker.render_claims import Claim, ClaimFailed, ClaimHeld, RenderClaims
from runtime.worker.render_files import delete_render_files
from runtime.worker.shutdown import StopPolicy
from runtime.worker.telemetry import MetricsSink, logger

MAX_BACKOFF_SECONDS = 900
# After the holder's last frame: muxing, upload and the cache copy, before the cache answers.
RENDER_FINISH_MARGIN_SECONDS = 2
PROGRESS_WRITE_SECONDS = 2.0
SYNC_SUMS_METADATA = "sync-sums"  # S3 user metadata of a segment: its sync-score sums (JSON)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DROPPED = "dropped"  # duplicate or redelivery of a job running elsewhere or finished
    DEFERRED = "deferred"  # the lease holder's own message came back; hidden until the lease ends
    REQUEUED = "requeued"  # handed back (OOM below the floor)
    RETRY = "retry"  # transient failure, back off through the message's visibility
    INTERRUPTED = "interrupted"  # stop requested; handed back at once
    LEASE_LOST = "lease_lost"  # another worker took the job over; nothing written
    UNREADABLE = "unreadable"  # not a job message; left to reach the DLQ
    EXPIRED = "expired"  # its deadline passed before it started; dropped without GPU time
    CANCELLED = "cancelled"  # its deadline passed, or its caller cancelled it, as it ran; stopped
    WAITING = "waiting"  # same content rendering for another job; back later for the cache


class ContentInProgress(Exception):
    """Another job's worker holds the render claim of this job's content."""

    def __init__(self, held: ClaimHeld) -> None:
        super().__init__(f"content claimed by job {held.job_id}")
        self.held = held


class DeadlineExceeded(Exception):
    """The job's `cancel_after` deadline passed after it started."""


def deadline_passed(deadline_at: str | None) -> bool:
    """True once the message's deadline is behind us; an unreadable deadline never fires."""
    if deadline_at is None:
        return False
    try:
        deadline = datetime.fromisoformat(deadline_at)
    except ValueError:
        return False
    return now() >= deadline


def now() -> datetime:
    """The deadline clock (a seam: tests move it forward instead of sleeping)."""
    return utc_now()


def render_cache_hash(
    *,
    engine: LipSyncEngine,
    avatar_sha256: str,
    audio_sha256: str,
    message: JobMessage,
    shared_across_tenants: bool = False,
) -> str:
    """The output depends on these and nothing else, so equal hashes mean equal videos. The
    tenant is part of the hash unless renders are shared across tenants: the output cache, the
    render claim and the media-error verdict are all keyed by it, and a shared one tells a tenant
    (by a fast hit or a shared failure) that another tenant rendered exactly this content."""
    basis = {
        "model_version": engine.model_version,
        "weights": engine.weights,
        "avatar": avatar_sha256,
        "avatar_options": message.avatar_options.model_dump(mode="json"),
        "audio": audio_sha256,
        "options": message.options.model_dump(mode="json"),
    }
    if not shared_across_tenants:
        basis["tenant"] = message.tenant
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def backoff_seconds(base_seconds: int, receive_count: int) -> int:
    return int(min(MAX_BACKOFF_SECONDS, base_seconds * 2 ** max(0, receive_count - 1)))


def recheck_seconds(
    held: ClaimHeld, *, base_seconds: int, wait_number: int, deadline_at: str | None, at: datetime
) -> int:
    """When a job waiting for another job's render of its content looks again: the retry base
    doubled per wait of this job (bounding the rechecks behind a long render), but no later
    than just after the holder expects to be done, its claim expires, or the deadline passes."""
    candidates = [
        backoff_seconds(base_seconds, wait_number),
        _seconds_until(held.expires_at, at) + 1,
    ]
    if held.done_by is not None:
        candidates.append(_seconds_until(held.done_by, at) + RENDER_FINISH_MARGIN_SECONDS)
    if deadline_at is not None:
        candidates.append(_seconds_until(deadline_at, at) + 1)
    return min(candidates)


class JobRunner:
    def __init__(
        self,
        *,
        settings: WorkerSettings,
        engine: LipSyncEngine,
        s3: Any,
        store: JobStore,
        poller: LanePoller,
        avatars: AvatarCache,
        notifier: Notifier,
        metrics: MetricsSink,
        protection: TaskProtection,
        stop: StopPolicy,
        gpu: GpuProbe,
        owner: str,
        claims: RenderClaims | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._s3 = s3
        self._store = store
        self._poller = poller
        self._avatars = avatars
        self._notifier = notifier
        self._metrics = metrics
        self._protection = protection
        self._stop = stop
        self._gpu = gpu
        self._owner = owner
        self._claims = claims or RenderClaims(store.table)
        self._lane_stats = LaneStats(store.table)
        self._claim: Claim | None = None  # the content claim of the render in progress

    def handle(self, delivery: Delivery) -> Outcome:
        try:
            message = JobMessage.model_validate_json(delivery.body)
        except ValidationError:
            # Not ours to interpret: leave it to the queue's redrive policy (DLQ), never delete.
            logger.error("unreadable job message", extra={"message_id": delivery.message_id})
            self._poller.set_visibility(delivery, 0)
            return Outcome.UNREADABLE
        logger.set_correlation_id(message.correlation_id)
        logger.append_keys(job_id=message.job_id, lane=message.lane.value)
        try:
            outcome = self._handle(delivery, message)
            logger.info("job delivery handled", extra={"outcome": outcome.value})
            return outcome
        finally:
            logger.remove_keys(["job_id", "lane"])
            logger.set_correlation_id(None)

    def _handle(self, delivery: Delivery, message: JobMessage) -> Outcome:
        if deadline_passed(message.deadline_at):
            expired = self._expire(delivery, message)
            if expired is not None:
                return expired
        acquired = self._store.acquire(
            message.job_id,
            owner=self._owner,
            message_id=delivery.message_id,
            lease_seconds=self._settings.visibility_timeout_seconds,
        )
        if acquired is None:
            return self._not_ours(delivery, message)
        lease, record = acquired
        self._seen(delivery.lane, lease.job_id)  # at once: ETAs count this job's remaining work
        self._protection.hold()
        self._stop.job_started()
        try:
            return self._run(delivery, message, lease, record)
        except LeaseLost:
            return self._lease_lost(delivery, message)

    def _lease_lost(self, delivery: Delivery, message: JobMessage) -> Outcome:
        """Cancelled (or otherwise ended) by someone else: say so and settle it now. Taken
        over by another worker: leave everything to that worker."""
        ended = ended_elsewhere(self._store, message.job_id)
        if ended is None:
            logger.warning("lease lost to another worker; stopped without writing")
            return Outcome.LEASE_LOST
        settle_ended(
            ended,
            s3=self._s3,
            outputs_bucket=self._settings.outputs_bucket,
            poller=self._poller,
            delivery=delivery,
        )
        return Outcome.CANCELLED

    def _expire(self, delivery: Delivery, message: JobMessage) -> Outcome | None:
        """Not started by its deadline: EXPIRED before any download or GPU work. None when the
        job is not QUEUED any more (running elsewhere, or final): the usual path decides."""
        reason = JobError(
            code=ErrorCode.DEADLINE_EXCEEDED, message="cancel_after passed before the job started"
        )
        record = self._store.expire(message.job_id, reason)
        if record is None:
            return None
        self._metrics.emit({Metric.JOBS_EXPIRED: 1}, lane=message.lane)
        if record.segments_done:  # an earlier attempt's, handed back before the deadline
            self._delete_segments(message, record.segments_done)
        self._notifier.job_finished(record)
        self._poller.delete(delivery)
        logger.info("job expired before it started")
        return Outcome.EXPIRED

    def _beat(self, delivery: Delivery, lease: Lease, started: float) -> None:
        self._poller.set_visibility(delivery, self._settings.visibility_timeout_seconds)
        try:
            # With this attempt's GPU time so far: an attempt that never finishes still counts.
            self._store.extend(
                lease,
                self._settings.visibility_timeout_seconds,
                gpu_seconds=time.monotonic() - started,
            )
        except LeaseLost:
            self._stop.lease_lost()
            raise
        self._protection.hold()
        self._extend_claim()
        self._seen(delivery.lane, lease.job_id)
        # Sampled mid-job, when utilization means something (idle GPUs read 0 %).
        sample = self._gpu.sample()
        if sample is not None:
            self._metrics.emit(
                {
                    Metric.GPU_UTILIZATION: sample.utilization_percent,
                    Metric.GPU_MEMORY_USED_PERCENT: sample.memory_used_percent,
                },
                lane=delivery.lane,
            )

    def _seen(self, lane: str, job_id: str) -> None:
        try:
            self._lane_stats.worker_seen(lane, self._owner, job_id)
        except ClientError:
            logger.warning("could not record worker presence")

    def _not_ours(self, delivery: Delivery, message: JobMessage) -> Outcome:
        record = self._store.get(message.job_id)
        if record is None:
            logger.warning("message for an unknown job dropped")
        elif record.status.is_final:
            if record.completion_pending:
                self._notifier.job_finished(record)  # the previous worker stopped before it
        elif record.status is JobStatus.QUEUED:
            self._poller.set_visibility(delivery, 0)  # handed back between our two reads: retry
            return Outcome.DEFERRED
        elif record.lease_message_id == delivery.message_id:
            # Deleting would delete the lease holder's message too; come back after its lease.
            self._poller.set_visibility(delivery, _seconds_until(record.lease_expires_at) + 1)
            return Outcome.DEFERRED
        self._poller.delete(delivery)
        self._metrics.emit({Metric.DUPLICATES_DROPPED: 1}, lane=message.lane)
        return Outcome.DROPPED

    def _run(
        self, delivery: Delivery, message: JobMessage, lease: Lease, record: JobRecord
    ) -> Outcome:
        timings: dict[str, float] = {"queue_wait_ms": _ms_since_iso(message.submitted_at)}
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="job-") as work:
            try:
                # The beat stops before any settling write, so it cannot undo a hand-back's
                # visibility 0 or extend a lease that was just released.
                with (
                    Heartbeat(
                        self._settings.heartbeat_seconds,
                        lambda: self._beat(delivery, lease, started),
                    ),
                    self._claim_ended(message),
                    refusals_as_media_errors(),
                ):
                    metadata, cache_hit, cache_key = self._render(
                        message, lease, record, Path(work), timings
                    )
            except ContentInProgress as waiting:
                return self._wait_for_content(delivery, message, lease, waiting.held)
            except MediaError as error:
                failure = JobError(code=error.code, message=error.message)
                return self._fail(delivery, message, lease, failure, timings, delete=True)
            except OutOfMemory as error:
                return self._out_of_memory(delivery, message, lease, error, timings)
            except DeadlineExceeded as error:
                return self._cancel_at_deadline(delivery, message, lease, str(error), timings)
            except Interrupted:
                if self._stop.is_lease_lost:
                    raise LeaseLost(lease.job_id) from None
                if deadline_passed(message.deadline_at):
                    stage = "while rendering"
                    return self._cancel_at_deadline(delivery, message, lease, stage, timings)
                self._store.hand_back(lease)
                # A new message: an interruption is not a failure, so it must not use up one of
                # the deliveries the queue's redrive policy counts towards the DLQ.
                self._poller.resend(delivery, 0)
                self._metrics.emit({Metric.JOBS_REQUEUED: 1}, lane=message.lane)
                logger.info("interrupted by stop request; job handed back")
                return Outcome.INTERRUPTED
            except LeaseLost:
                raise
            except Exception as error:
                return self._transient(delivery, message, lease, error, timings)
        return self._succeed(
            delivery,
            message,
            lease,
            metadata,
            timings,
            cache_hit=cache_hit,
            cache_key=cache_key,
            earlier_gpu_seconds=record.gpu_seconds_before or 0.0,
        )

    def _render(
        self,
        message: JobMessage,
        lease: Lease,
        record: JobRecord,
        work: Path,
        timings: dict[str, float],
    ) -> tuple[dict[str, str], bool, str]:
        """Inputs to output object; the output's metadata, whether the cache supplied it, and
        the cache key (recorded on the job so a purge can delete the cached render too)."""
        _check_deadline(message, "before downloading")
        started = time.monotonic()
        audio, avatar = self._fetch_inputs(message, work)
        timings["download_ms"] = _ms_since(started)
        content_hash = render_cache_hash(
            engine=self._engine,
            avatar_sha256=avatar.sha256,
            audio_sha256=audio.sha256,
            message=message,
            shared_across_tenants=self._settings.share_render_cache_across_tenants,
        )
        cache_key = rendered_cache_key(self._engine.model_version, content_hash)
        destination = output_key(message.tenant, message.job_id)
        cached = self._cached_or_claimed(content_hash, cache_key, destination, message)
        if cached is not None:
            self._metrics.emit({Metric.OUTPUT_CACHE_HITS: 1}, lane=message.lane)
            if record.segments_done:  # an interrupted attempt's, no longer needed
                self._delete_segments(message, record.segments_done)
            return cached, True, cache_key

        _check_deadline(message, "before preparing")
        started = time.monotonic()
        prepared, source = self._avatars.get_or_prepare(
            message.avatar_id,
            message.lane,
            lambda: self._engine.prepare(
                avatar.path,
                message.avatar_options,
                limits=decode_limits(self._settings.limits),
                should_stop=lambda: (
                    self._stop.should_interrupt() or deadline_passed(message.deadline_at)
                ),
            ),
        )
        timings["prepare_ms"] = _ms_since(started)
        plan = self._segment_plan(message, lease, record, content_hash, work / "segments")
        self._store.start_rendering(lease, resumed_from_frame=plan.start_frame)
        if plan.start_frame:
            logger.info("resuming from a segment", extra={"frame": plan.start_frame})
        hint = record.batch_size_hint or message.batch_size_hint
        out_path = work / "output.mp4"
        started = time.monotonic()
        self._stop.render_started(plan.start_frame)
        rendered = self._engine.speak(
            prepared,
            audio.path,
            out_path,
            options=message.options,
            batch_size=hint,
            # A hinted retry may go all the way down; a first attempt hands back at the floor.
            min_batch_size=1 if hint else self._settings.min_batch_size,
            progress=self._progress_writer(lease),
            on_oom_halving=lambda size: self._metrics.emit(
                {Metric.OOM_HALVINGS: 1}, lane=message.lane
            ),
            should_stop=lambda: (
                self._stop.should_interrupt() or deadline_passed(message.deadline_at)
            ),
            segments=plan,
        )
        speak_ms = _ms_since(started)
        # Engines may split encoding ("encode", "encode_flush" for a background encoder).
        encode_ms = sum(v for k, v in rendered.timings_ms.items() if k.startswith("encode")) or None
        timings["speak_ms"] = speak_ms - (encode_ms or 0.0)
        if encode_ms is not None:
            timings["encode_ms"] = encode_ms
        self._metrics.emit(
            {Metric.FRAMES_PER_SECOND: rendered.frames / max(speak_ms / 1000, 1e-6)},
            lane=message.lane,
        )
        check_output(out_path, frames=rendered.frames)
        started = time.monotonic()
        metadata = _cache_metadata(rendered)
        self._s3.upload_file(
            str(out_path),
            self._settings.outputs_bucket,
            destination,
            ExtraArgs={"ContentType": "video/mp4", "Metadata": metadata},
        )
        self._s3.copy_object(
            Bucket=self._settings.outputs_bucket,
            Key=cache_key,
            CopySource={"Bucket": self._settings.outputs_bucket, "Key": destination},
        )
        timings["upload_ms"] = _ms_since(started)
        logger.info("rendered", extra={"avatar_source": source.value, "frames": rendered.frames})
        return metadata, False, cache_key

    def _segment_plan(
        self,
        message: JobMessage,
        lease: Lease,
        record: JobRecord,
        content_hash: str,
        directory: Path,
    ) -> SegmentPlan:
        """Render in segments, each uploaded as it finishes; start after the segments an earlier
        attempt left for this same render (same content hash and segment size), if any."""
        size = self._settings.segment_frames
        directory.mkdir(parents=True, exist_ok=True)
        done = record.segments_done or 0
        if done and (record.segments_hash != content_hash or record.segment_frames != size):
            logger.info("segments of another render found; starting over")
            self._delete_segments(message, done)
            self._store.reset_segments(lease)
            done = 0
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
                done = index
                break
            if sums is not None:
                sums_before = sums if sums_before is None else sums_before.plus(sums)
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

    def _delete_segments(self, message: JobMessage, count: int) -> None:
        """Segments and the preview playlist of a render no output or preview needs."""
        delete_render_files(
            self._s3, self._settings.outputs_bucket, message.tenant, message.job_id, count
        )

    def _fetch_inputs(self, message: JobMessage, work: Path) -> tuple[FetchedInput, FetchedInput]:
        """Audio first: its duration check is cheap and fails long jobs before the big download."""
        limits = self._settings.limits.for_lane(message.lane)
        audio = fetch_input(
            self._s3,
            message.audio,
            tenant=message.tenant,
            allowed_bucket=self._settings.uploads_bucket,
            max_bytes=limits.max_audio_bytes,
            dest=work / "audio",
            what="audio",
        )
        # In a child process: a decoder crash or a runaway allocation costs this job only.
        shared_checks().run(check_audio, audio.path, self._settings.limits, limits)
        avatar = fetch_input(
            self._s3,
            message.avatar,
            tenant=message.tenant,
            allowed_bucket=self._settings.uploads_bucket,
            max_bytes=max(limits.max_video_bytes, limits.max_image_bytes),
            dest=work / "avatar",
            what="avatar",
        )
        shared_checks().run(check_avatar, avatar.path, self._settings.limits.max_video_pixels)
        return audio, avatar

    def _cached_or_claimed(
        self, content_hash: str, cache_key: str, destination: str, message: JobMessage
    ) -> dict[str, str] | None:
        """The cached render's metadata (copied to `destination`), or None once this worker holds
        the content's claim and renders it. Raises `ContentInProgress` while another job's worker
        holds the claim, and the content's `MediaError` when that worker found it unusable."""
        cached = self._copy_cached(cache_key, destination)
        if cached is not None:
            return cached
        taken = self._claims.take(
            content_hash,
            owner=self._owner,
            job_id=message.job_id,
            lease_seconds=self._settings.visibility_timeout_seconds,
        )
        if isinstance(taken, ClaimFailed):
            raise MediaError(taken.error.code, taken.error.message)
        if isinstance(taken, ClaimHeld):
            raise ContentInProgress(taken)
        self._claim = taken
        # The previous holder may have cached it and let go between our two looks.
        return self._copy_cached(cache_key, destination)

    @contextmanager
    def _claim_ended(self, message: JobMessage) -> Iterator[None]:
        """Ends the claim `_render` took however the render ends: a media error is kept as the
        content's verdict (jobs waiting for it fail at once); a stop request keeps it, so this
        job resumes from its own segments when it comes back (it may retake its own claim; the
        claim expires with its lease if it never does); anything else releases it (the render
        is cached, or another worker may try)."""
        verdict: JobError | None = None
        keep = False
        try:
            yield
        except MediaError as error:
            verdict = JobError(code=error.code, message=error.message)
            raise
        except Interrupted:
            keep = not deadline_passed(message.deadline_at)
            raise
        finally:
            claim, self._claim = self._claim, None
            if claim is not None and not keep:
                try:
                    if verdict is None:
                        self._claims.release(claim)
                    else:
                        self._claims.fail(claim, verdict)
                except (ClientError, BotoCoreError):
                    # Best effort: an unended claim only makes waiting jobs wait out its lease.
                    logger.warning("could not end the render claim; it expires with its lease")

    def _extend_claim(self) -> None:
        claim = self._claim
        if claim is None:
            return
        try:
            seconds_left = self._stop.seconds_left_estimate()
            if not self._claims.extend(
                claim, self._settings.visibility_timeout_seconds, seconds_left
            ):
                logger.warning("render claim taken over; this render may be repeated elsewhere")
        except (ClientError, BotoCoreError):
            logger.warning("could not extend the render claim")

    def _wait_for_content(
        self, delivery: Delivery, message: JobMessage, lease: Lease, held: ClaimHeld
    ) -> Outcome:
        """Back to QUEUED as a new message due at `recheck_seconds`: the next delivery finds
        the render cached, takes over an expired claim, or expires the job. A wait is not a
        failed attempt: a new message, so it uses up no receives (a job behind a long render is
        never dead-lettered), and the job's `attempt` stays as it was (`claim_waits` counts)."""
        waits = self._store.wait_for_content(
            lease, "waiting for the same content rendered by another job"
        )
        delay = recheck_seconds(
            held,
            base_seconds=self._settings.retry_base_seconds,
            wait_number=waits,
            deadline_at=message.deadline_at,
            at=now(),
        )
        self._poller.resend(delivery, delay)
        self._metrics.emit({Metric.RENDER_CLAIM_WAITS: 1}, lane=message.lane)
        logger.info("same content rendering for another job; handed back", extra={"delay": delay})
        return Outcome.WAITING

    def _copy_cached(self, cache_key: str, destination: str) -> dict[str, str] | None:
        """Copy a cached render to this job's output key; its metadata, or None on a miss."""
        bucket = self._settings.outputs_bucket
        try:
            head = self._s3.head_object(Bucket=bucket, Key=cache_key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        metadata: dict[str, str] = head.get("Metadata", {})
        if not all(name in metadata for name in ("frames", "fps", "weights")):
            return None  # not written by us (or by an older worker): render again
        self._s3.copy_object(
            Bucket=bucket, Key=destination, CopySource={"Bucket": bucket, "Key": cache_key}
        )
        return metadata

    def _succeed(
        self,
        delivery: Delivery,
        message: JobMessage,
        lease: Lease,
        metadata: dict[str, str],
        timings: dict[str, float],
        *,
        cache_hit: bool,
        cache_key: str,
        earlier_gpu_seconds: float = 0.0,
    ) -> Outcome:
        sync = float(metadata["sync-confidence"]) if "sync-confidence" in metadata else None
        low_sync = None if sync is None else sync < message.options.sync_threshold
        # Every attempt's: a resumed render's cost includes the interrupted attempts.
        gpu_seconds = round(earlier_gpu_seconds + _service_seconds(timings), 3)
        instance_type = read_instance_type(self._settings.host_info_file)
        cost = estimated_cost_usd(gpu_seconds, instance_type, dict(self._settings.gpu_prices))
        result = Success(
            output=MediaRef(
                bucket=self._settings.outputs_bucket,
                key=output_key(message.tenant, message.job_id),
            ),
            frames=int(metadata["frames"]),
            fps=float(metadata["fps"]),
            sync_confidence=sync,
            low_sync=low_sync,
            weights=metadata["weights"],
            timings=StageTimings(**timings),
            gpu_seconds=gpu_seconds,
            estimated_cost_usd=cost,
            instance_type=instance_type,
            cache_key=cache_key,
            cache_hit=cache_hit,
        )
        record = self._store.succeed(lease, result)
        if not cache_hit:
            # The segments stay for the preview's grace; their lifecycle rule expires them. The
            # rate sample is this attempt's: a resumed render rendered only from its resume point.
            rendered = result.frames - (record.resumed_from_frame or 0)
            self._publish_rate(message, rendered, timings)
        values: dict[Metric, float] = {
            Metric.JOBS_SUCCEEDED: 1,
            Metric.QUEUE_WAIT_MS: timings["queue_wait_ms"],
            Metric.DOWNLOAD_MS: timings["download_ms"],
        }
        for name, metric in (
            ("prepare_ms", Metric.PREPARE_MS),
            ("speak_ms", Metric.SPEAK_MS),
            ("encode_ms", Metric.ENCODE_MS),
            ("upload_ms", Metric.UPLOAD_MS),
        ):
            if name in timings:
                values[metric] = timings[name]
        values[Metric.GPU_SECONDS] = gpu_seconds
        values[Metric.OUTPUT_SECONDS] = result.frames / max(result.fps, 1e-6)
        if cost is not None:
            values[Metric.ESTIMATED_COST_USD] = cost
        if sync is not None and not cache_hit:
            values[Metric.SYNC_CONFIDENCE] = sync
            values[Metric.LOW_SYNC_JOBS] = 1 if low_sync else 0
        self._metrics.emit(values, lane=message.lane)
        self._notifier.job_finished(record)
        self._poller.delete(delivery)
        return Outcome.SUCCEEDED

    def _publish_rate(self, message: JobMessage, frames: int, timings: dict[str, float]) -> None:
        """Service time (download to upload) of this render, for the lane's ETA; best effort."""
        seconds = _service_seconds(timings)
        try:
            self._lane_stats.publish_rate(
                message.lane, self._owner, message.job_id, frames, seconds
            )
        except ClientError:
            logger.warning("could not publish the render rate")

    def _fail(
        self,
        delivery: Delivery,
        message: JobMessage,
        lease: Lease,
        error: JobError,
        timings: dict[str, float],
        *,
        delete: bool,
    ) -> Outcome:
        record = self._store.fail(lease, error, StageTimings(**timings))
        self._metrics.emit({Metric.JOBS_FAILED: 1}, lane=message.lane, error_code=error.code)
        self._notifier.job_finished(record)
        logger.warning("job failed", extra={"error_code": error.code.value})
        if delete:
            self._poller.delete(delivery)
        else:
            self._poller.set_visibility(delivery, 0)  # the next receive moves it to the DLQ
        return Outcome.FAILED

    def _cancel_at_deadline(
        self,
        delivery: Delivery,
        message: JobMessage,
        lease: Lease,
        stage: str,
        timings: dict[str, float],
    ) -> Outcome:
        reason = JobError(
            code=ErrorCode.DEADLINE_EXCEEDED, message=f"cancel_after passed {stage}; stopped"
        )
        record = self._store.cancel(lease, reason, StageTimings(**timings))
        self._metrics.emit({Metric.JOBS_DEADLINE_CANCELLED: 1}, lane=message.lane)
        # No output, so no preview to finish (one more than recorded: one may be in flight).
        self._delete_segments(message, (record.segments_done or 0) + 1)
        self._notifier.job_finished(record)
        self._poller.delete(delivery)
        logger.info("job cancelled at its deadline", extra={"stage": stage})
        return Outcome.CANCELLED

    def _out_of_memory(
        self,
        delivery: Delivery,
        message: JobMessage,
        lease: Lease,
        error: OutOfMemory,
        timings: dict[str, float],
    ) -> Outcome:
        last_receive = delivery.receive_count >= self._settings.max_receive_count
        if error.batch_size <= 1 or last_receive:
            # Nothing smaller to try, or no delivery left to try it with.
            failure = JobError(code=error.code, message=error.message)
            return self._fail(delivery, message, lease, failure, timings, delete=True)
        hint = error.batch_size // 2
        self._store.hand_back(lease, batch_size_hint=hint)
        self._poller.set_visibility(delivery, 0)
        self._metrics.emit({Metric.JOBS_REQUEUED: 1}, lane=message.lane)
        logger.warning("out of memory at the batch floor; handed back", extra={"next_batch": hint})
        return Outcome.REQUEUED

    def _transient(
        self,
        delivery: Delivery,
        message: JobMessage,
        lease: Lease,
        error: Exception,
        timings: dict[str, float],
    ) -> Outcome:
        logger.exception("transient failure", extra={"receive_count": delivery.receive_count})
        if delivery.receive_count >= self._settings.max_receive_count:
            reason = JobError(
                code=ErrorCode.RETRIES_EXHAUSTED,
                message=f"failed {delivery.receive_count} times; last error {type(error).__name__}",
            )
            return self._fail(delivery, message, lease, reason, timings, delete=False)
        self._store.hand_back(lease)
        self._poller.set_visibility(
            delivery, backoff_seconds(self._settings.retry_base_seconds, delivery.receive_count)
        )
        self._metrics.emit({Metric.JOBS_REQUEUED: 1}, lane=message.lane)
        return Outcome.RETRY

    def _progress_writer(self, lease: Lease) -> ProgressFn:
        last_write = [0.0]
        lock = threading.Lock()

        def progress(frames_done: int, frames_total: int) -> None:
            self._stop.progress(frames_done, frames_total)
            now = time.monotonic()
            with lock:
                if now - last_write[0] < PROGRESS_WRITE_SECONDS and frames_done < frames_total:
                    return
                last_write[0] = now
            try:
                self._store.progress(lease, frames_done, frames_total)
            except LeaseLost:
                self._stop.lease_lost()  # the engine stops at its next should_stop check
            except ClientError:
                logger.warning("progress write failed")

        return progress


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


def _is_missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


def _service_seconds(timings: dict[str, float]) -> float:
    """Download to upload: the time this job held the task's GPU."""
    stages = ("download_ms", "prepare_ms", "speak_ms", "encode_ms", "upload_ms")
    return sum(timings.get(stage, 0.0) for stage in stages) / 1000


def _check_deadline(message: JobMessage, stage: str) -> None:
    if deadline_passed(message.deadline_at):
        raise DeadlineExceeded(stage)


def _cache_metadata(rendered: Rendered) -> dict[str, str]:
    metadata = {
        "frames": str(rendered.frames),
        "fps": str(rendered.fps),
        "weights": rendered.weights,
    }
    if rendered.sync_confidence is not None:
        metadata["sync-confidence"] = str(rendered.sync_confidence)
    return metadata


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _ms_since_iso(moment: str) -> float:
    try:
        then = datetime.fromisoformat(moment)
    except ValueError:
        return 0.0
    return max(0.0, (utc_now() - then).total_seconds() * 1000)


def _seconds_until(moment: str | None, reference: datetime | None = None) -> int:
    if moment is None:
        return 0
    try:
        then = datetime.fromisoformat(moment)
    except ValueError:
        return 0
    return max(0, int((then - (reference or utc_now())).total_seconds()))
