"""CloudWatch metric names: emitted by the API and worker (EMF), graphed and alarmed by the stack.

One definition, so a dashboard widget can never point at a metric nobody emits.
"""

from __future__ import annotations

from enum import StrEnum

from runtime.common.jobs import ErrorCode

NAMESPACE = "MuseTalk"

# Dimension names. Every worker metric carries `Lane`; `Service` is "api" or "worker".
DIMENSION_LANE = "Lane"
DIMENSION_SERVICE = "Service"
DIMENSION_ERROR_CODE = "ErrorCode"


class Metric(StrEnum):
    # API
    JOBS_ACCEPTED = "JobsAccepted"
    JOBS_REJECTED = "JobsRejected"
    JOBS_REENQUEUED = "JobsReenqueued"  # re-sent by the sweeper
    # Worker: outcomes
    JOBS_SUCCEEDED = "JobsSucceeded"
    JOBS_FAILED = "JobsFailed"
    JOBS_REQUEUED = "JobsRequeued"
    JOBS_EXPIRED = "JobsExpired"  # deadline passed before start: dropped without GPU time
    JOBS_DEADLINE_CANCELLED = "JobsDeadlineCancelled"  # deadline passed while preparing/rendering
    DUPLICATES_DROPPED = "DuplicatesDropped"
    OUTPUT_CACHE_HITS = "OutputCacheHits"
    # Handed back because another job's worker renders the same content (the cache answers later)
    RENDER_CLAIM_WAITS = "RenderClaimWaits"
    # Worker: time (milliseconds) and speed
    QUEUE_WAIT_MS = "QueueWaitMs"
    DOWNLOAD_MS = "DownloadMs"
    PREPARE_MS = "PrepareMs"
    SPEAK_MS = "SpeakMs"
    ENCODE_MS = "EncodeMs"
    UPLOAD_MS = "UploadMs"
    FRAMES_PER_SECOND = "FramesPerSecond"
    # Worker: cost (succeeded renders; cache hits cost no GPU time)
    GPU_SECONDS = "GpuSeconds"
    ESTIMATED_COST_USD = "EstimatedCostUsd"
    OUTPUT_SECONDS = "OutputSeconds"
    # Worker: model health
    SYNC_CONFIDENCE = "SyncConfidence"
    LOW_SYNC_JOBS = "LowSyncJobs"
    OOM_HALVINGS = "OomHalvings"
    AVATAR_CACHE_HITS = "AvatarCacheHits"
    AVATAR_CACHE_MISSES = "AvatarCacheMisses"
    AVATAR_CACHE_LOAD_MS = "AvatarCacheLoadMs"
    # Worker: GPU (NVML)
    GPU_UTILIZATION = "GpuUtilization"
    GPU_MEMORY_USED_PERCENT = "GpuMemoryUsedPercent"
    # Worker: start-up
    STARTUP_DOWNLOAD_MS = "StartupDownloadMs"
    STARTUP_LOAD_MS = "StartupLoadMs"
    # 1 per check while the weights manifest is missing (deployed before the weights upload)
    WEIGHTS_MISSING = "WeightsMissing"


# `Service` dimension values, and the one dimension set each side emits with. CloudWatch matches a
# metric only on its exact dimension set, so emitters and the stack's dashboard/alarms both use
# these: an API metric is {Service: "api"}, a worker metric is {Service: "worker", Lane: <lane>}.
SERVICE_API = "api"
SERVICE_WORKER = "worker"


def api_dimensions() -> dict[str, str]:
    return {DIMENSION_SERVICE: SERVICE_API}


def worker_dimensions(lane: str) -> dict[str, str]:
    return {DIMENSION_SERVICE: SERVICE_WORKER, DIMENSION_LANE: lane}


def dead_letter_dimensions(lane: str) -> dict[str, str]:
    """The one set the dead-letter handler emits `JobsFailed` with (a job that used up its
    deliveries); the failure-rate alarm adds it to the worker's failures."""
    return {
        DIMENSION_SERVICE: SERVICE_API,
        DIMENSION_LANE: lane,
        DIMENSION_ERROR_CODE: ErrorCode.RETRIES_EXHAUSTED.value,
    }
