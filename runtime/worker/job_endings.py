"""Every way one delivery of a job ends, each an `Outcome`.

A job succeeds, fails, is cancelled at its deadline, expires before it starts, is handed back
(out of memory, a transient error, a stop request, waiting for another job's render of its
content) or is not ours to run (a duplicate or a redelivery). Each ending writes the record
fenced on the lease first, then emits its metrics, announces a final status, and only then
deletes the message or sets when it comes back: a crash before that leaves it to be redelivered.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from runtime.common.cost import estimated_cost_usd, read_instance_type
from runtime.common.jobs import ErrorCode, JobError, JobMessage, JobStatus, MediaRef, StageTimings
from runtime.common.keys import output_key
from runtime.common.metrics import Metric
from runtime.engine.engine_contract import OutOfMemory
from runtime.worker import deadlines
from runtime.worker.cancellation import ended_elsewhere, settle_ended
from runtime.worker.config import WorkerSettings
from runtime.worker.engine_options import error_code
from runtime.worker.job_store import JobStore, Lease, LeaseLost, Success
from runtime.worker.lane_stats import LaneStats
from runtime.worker.lanes import Delivery, LanePoller
from runtime.worker.notifications import Notifier
from runtime.worker.render_claims import ClaimHeld
from runtime.worker.segment_resume import RenderSegments
from runtime.worker.shutdown import StopPolicy
from runtime.worker.telemetry import MetricsSink, logger

MAX_BACKOFF_SECONDS = 900
# After the holder's last frame: muxing, upload and the cache copy, before the cache answers.
RENDER_FINISH_MARGIN_SECONDS = 2


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
        deadlines.seconds_until(held.expires_at, at) + 1,
    ]
    if held.done_by is not None:
        candidates.append(deadlines.seconds_until(held.done_by, at) + RENDER_FINISH_MARGIN_SECONDS)
    if deadline_at is not None:
        candidates.append(deadlines.seconds_until(deadline_at, at) + 1)
    return min(candidates)


def service_seconds(timings: dict[str, float]) -> float:
    """Download to upload: the time this job held the task's GPU."""
    stages = ("download_ms", "prepare_ms", "speak_ms", "encode_ms", "upload_ms")
    return sum(timings.get(stage, 0.0) for stage in stages) / 1000


class JobEndings:
    """The settling writes of each outcome; the only place a job's message is deleted."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        s3: Any,
        store: JobStore,
        poller: LanePoller,
        notifier: Notifier,
        metrics: MetricsSink,
        stop: StopPolicy,
        lane_stats: LaneStats,
        segments: RenderSegments,
        owner: str,
    ) -> None:
        self._settings = settings
        self._s3 = s3
        self._store = store
        self._poller = poller
        self._notifier = notifier
        self._metrics = metrics
        self._stop = stop
        self._lane_stats = lane_stats
        self._segments = segments
        self._owner = owner

    def expire(self, delivery: Delivery, message: JobMessage) -> Outcome | None:
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
            self._segments.delete(message, record.segments_done)
        self._notifier.job_finished(record)
        self._poller.delete(delivery)
        logger.info("job expired before it started")
        return Outcome.EXPIRED

    def not_ours(self, delivery: Delivery, message: JobMessage) -> Outcome:
        """The lease went to someone else: drop a duplicate, or hide a redelivery until later."""
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
            self._poller.set_visibility(
                delivery, deadlines.seconds_until(record.lease_expires_at) + 1
            )
            return Outcome.DEFERRED
        self._poller.delete(delivery)
        self._metrics.emit({Metric.DUPLICATES_DROPPED: 1}, lane=message.lane)
        return Outcome.DROPPED

    def lease_lost(self, delivery: Delivery, message: JobMessage) -> Outcome:
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

    def succeed(
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
        gpu_seconds = round(earlier_gpu_seconds + service_seconds(timings), 3)
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
        self._emit_success(
            message,
            result,
            timings,
            gpu_seconds=gpu_seconds,
            cost=cost,
            sync=sync,
            low_sync=low_sync,
        )
        self._notifier.job_finished(record)
        self._poller.delete(delivery)
        return Outcome.SUCCEEDED

    def fail(
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
        # A failed job has no output and its preview stops here: its segments go now, not at
        # the lifecycle rule's expiry (one more than recorded: one may have been in flight).
        self._segments.delete(message, (record.segments_done or 0) + 1)
        self._notifier.job_finished(record)
        logger.warning("job failed", extra={"error_code": error.code.value})
        if delete:
            self._poller.delete(delivery)
        else:
            self._poller.set_visibility(delivery, 0)  # the next receive moves it to the DLQ
        return Outcome.FAILED

    def cancel_at_deadline(
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
        self._segments.delete(message, (record.segments_done or 0) + 1)
        self._notifier.job_finished(record)
        self._poller.delete(delivery)
        logger.info("job cancelled at its deadline", extra={"stage": stage})
        return Outcome.CANCELLED

    def interrupted(
        self, delivery: Delivery, message: JobMessage, lease: Lease, timings: dict[str, float]
    ) -> Outcome:
        """The engine stopped on request: the lease was lost, the deadline passed, or the task
        is stopping (then hand the job back for another worker to resume)."""
        if self._stop.is_lease_lost:
            raise LeaseLost(lease.job_id) from None
        if deadlines.deadline_passed(message.deadline_at):
            return self.cancel_at_deadline(delivery, message, lease, "while rendering", timings)
        self._store.hand_back(lease)
        # A new message: an interruption is not a failure, so it must not use up one of
        # the deliveries the queue's redrive policy counts towards the DLQ.
        self._poller.resend(delivery, 0)
        self._metrics.emit({Metric.JOBS_REQUEUED: 1}, lane=message.lane)
        logger.info("interrupted by stop request; job handed back")
        return Outcome.INTERRUPTED

    def out_of_memory(
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
            failure = JobError(code=error_code(error.failure), message=error.message)
            return self.fail(delivery, message, lease, failure, timings, delete=True)
        hint = error.batch_size // 2
        self._store.hand_back(lease, batch_size_hint=hint)
        self._poller.set_visibility(delivery, 0)
        self._metrics.emit({Metric.JOBS_REQUEUED: 1}, lane=message.lane)
        logger.warning("out of memory at the batch floor; handed back", extra={"next_batch": hint})
        return Outcome.REQUEUED

    def transient(
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
            return self.fail(delivery, message, lease, reason, timings, delete=False)
        self._store.hand_back(lease)
        self._poller.set_visibility(
            delivery, backoff_seconds(self._settings.retry_base_seconds, delivery.receive_count)
        )
        self._metrics.emit({Metric.JOBS_REQUEUED: 1}, lane=message.lane)
        return Outcome.RETRY

    def wait_for_content(
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
            at=deadlines.now(),
        )
        self._poller.resend(delivery, delay)
        self._metrics.emit({Metric.RENDER_CLAIM_WAITS: 1}, lane=message.lane)
        logger.info("same content rendering for another job; handed back", extra={"delay": delay})
        return Outcome.WAITING

    def _emit_success(
        self,
        message: JobMessage,
        result: Success,
        timings: dict[str, float],
        *,
        gpu_seconds: float,
        cost: float | None,
        sync: float | None,
        low_sync: bool | None,
    ) -> None:
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
        if sync is not None and not result.cache_hit:
            values[Metric.SYNC_CONFIDENCE] = sync
            values[Metric.LOW_SYNC_JOBS] = 1 if low_sync else 0
        self._metrics.emit(values, lane=message.lane)

    def _publish_rate(self, message: JobMessage, frames: int, timings: dict[str, float]) -> None:
        """Service time (download to upload) of this render, for the lane's ETA; best effort."""
        seconds = service_seconds(timings)
        try:
            self._lane_stats.publish_rate(
                message.lane, self._owner, message.job_id, frames, seconds
            )
        except ClientError:
            logger.warning("could not publish the render rate")
