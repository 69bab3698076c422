"""One delivery of one job message, from lease to outcome.

The order of writes is what keeps jobs from being lost or rendered twice: take the lease first
(only one worker wins), render, write the output, record the final status fenced on the lease,
publish the event, and only then delete the message. A crash anywhere before the delete leaves
the message to come back; the lease, the output cache and `completion_pending` make the repeat
cheap and harmless.

This module holds the lease and its heartbeat and turns what the render raised into an ending:
the render is `job_render`, the endings `job_endings`, the output cache and content claim
`render_cache`, the segments and preview `segment_resume`, the deadline clock `deadlines`.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from runtime.common.jobs import JobError, JobMessage
from runtime.common.metrics import Metric
from runtime.common.records import JobRecord
from runtime.engine.engine_contract import Interrupted, LipSyncEngine, OutOfMemory
from runtime.worker.avatar_cache import AvatarCache
from runtime.worker.config import WorkerSettings
from runtime.worker.deadlines import DeadlineExceeded, deadline_passed
from runtime.worker.engine_options import engine_failures
from runtime.worker.gpu import GpuProbe
from runtime.worker.heartbeat import Heartbeat
from runtime.worker.job_endings import JobEndings, Outcome
from runtime.worker.job_render import JobRender
from runtime.worker.job_store import JobStore, Lease, LeaseLost, utc_now
from runtime.worker.lane_stats import LaneStats
from runtime.worker.lanes import Delivery, LanePoller
from runtime.worker.media_errors import MediaError
from runtime.worker.notifications import Notifier
from runtime.worker.protection import TaskProtection
from runtime.worker.render_cache import ContentInProgress, RenderCache
from runtime.worker.render_claims import RenderClaims
from runtime.worker.segment_resume import RenderSegments
from runtime.worker.shutdown import StopPolicy
from runtime.worker.telemetry import MetricsSink, logger


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
        self._store = store
        self._poller = poller
        self._metrics = metrics
        self._protection = protection
        self._stop = stop
        self._gpu = gpu
        self._owner = owner
        self._lane_stats = LaneStats(store.table)
        self._cache = RenderCache(
            settings=settings,
            s3=s3,
            claims=claims or RenderClaims(store.table),
            stop=stop,
            owner=owner,
        )
        segments = RenderSegments(settings=settings, s3=s3, store=store, stop=stop)
        self._render = JobRender(
            settings=settings,
            engine=engine,
            s3=s3,
            store=store,
            avatars=avatars,
            metrics=metrics,
            stop=stop,
            cache=self._cache,
            segments=segments,
        )
        self._endings = JobEndings(
            settings=settings,
            s3=s3,
            store=store,
            poller=poller,
            notifier=notifier,
            metrics=metrics,
            stop=stop,
            lane_stats=self._lane_stats,
            segments=segments,
            owner=owner,
        )

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
            expired = self._endings.expire(delivery, message)
            if expired is not None:
                return expired
        acquired = self._store.acquire(
            message.job_id,
            owner=self._owner,
            message_id=delivery.message_id,
            lease_seconds=self._settings.visibility_timeout_seconds,
        )
        if acquired is None:
            return self._endings.not_ours(delivery, message)
        lease, record = acquired
        self._seen(delivery.lane, lease.job_id)  # at once: ETAs count this job's remaining work
        self._protection.hold()
        self._stop.job_started()
        try:
            return self._run(delivery, message, lease, record)
        except LeaseLost:
            return self._endings.lease_lost(delivery, message)

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
        self._cache.extend_claim()
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

    def _run(
        self, delivery: Delivery, message: JobMessage, lease: Lease, record: JobRecord
    ) -> Outcome:
        timings: dict[str, float] = {"queue_wait_ms": _ms_since_iso(message.submitted_at)}
        started = time.monotonic()
        endings = self._endings
        with tempfile.TemporaryDirectory(prefix="job-") as work:
            try:
                # The beat stops before any settling write, so it cannot undo a hand-back's
                # visibility 0 or extend a lease that was just released.
                with (
                    Heartbeat(
                        self._settings.heartbeat_seconds,
                        lambda: self._beat(delivery, lease, started),
                    ),
                    self._cache.claim_ended(message),
                    engine_failures(),
                ):
                    metadata, cache_hit, cache_key = self._render.render(
                        message, lease, record, Path(work), timings
                    )
            except ContentInProgress as waiting:
                return endings.wait_for_content(delivery, message, lease, waiting.held)
            except MediaError as error:
                failure = JobError(code=error.code, message=error.message)
                return endings.fail(delivery, message, lease, failure, timings, delete=True)
            except OutOfMemory as error:
                return endings.out_of_memory(delivery, message, lease, error, timings)
            except DeadlineExceeded as error:
                return endings.cancel_at_deadline(delivery, message, lease, str(error), timings)
            except Interrupted:
                return endings.interrupted(delivery, message, lease, timings)
            except LeaseLost:
                raise
            except Exception as error:
                return endings.transient(delivery, message, lease, error, timings)
        return endings.succeed(
            delivery,
            message,
            lease,
            metadata,
            timings,
            cache_hit=cache_hit,
            cache_key=cache_key,
            earlier_gpu_seconds=record.gpu_seconds_before or 0.0,
        )


def _ms_since_iso(moment: str) -> float:
    try:
        then = datetime.fromisoformat(moment)
    except ValueError:
        return 0.0
    return max(0.0, (utc_now() - then).total_seconds() * 1000)
