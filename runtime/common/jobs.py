"""Job contract: statuses, lanes, options, the SQS message and the completion event.

The API writes `JobMessage` to a lane's queue and the worker reads it; the worker publishes
`CompletionEvent` to the SNS topic (and a signed webhook). Both sides validate with these models,
so a field renamed on one side fails the other's tests.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.common.names import Lane

# bbox_shift moves the top edge of the face crop (pixels, positive = down, more mouth opening).
# The official README shows [-9, 9]; we accept a wider, documented range and reject the rest.
BBOX_SHIFT_MIN = -40
BBOX_SHIFT_MAX = 40
# v1.5 extra margin below the chin (pixels); the official default is 10, training used [0, 20].
EXTRA_MARGIN_MIN = 0
EXTRA_MARGIN_MAX = 40
FPS_MIN = 1
FPS_MAX = 60
MODEL_VERSION = "musetalk-v1.5"


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    PREPARING = "PREPARING"
    RENDERING = "RENDERING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"  # its `cancel_after` deadline passed before a worker started it

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)


class ErrorCode(StrEnum):
    """Why a job failed. Permanent codes fail at once; transient ones are retried by the queue."""

    INVALID_MEDIA = "INVALID_MEDIA"
    NO_FACE = "NO_FACE"
    AUDIO_TOO_LONG = "AUDIO_TOO_LONG"
    NO_SPEECH = "NO_SPEECH"
    MEDIA_TOO_LARGE = "MEDIA_TOO_LARGE"
    INPUT_NOT_FOUND = "INPUT_NOT_FOUND"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
    INTERNAL = "INTERNAL"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"  # the reason of an EXPIRED or deadline-CANCELLED job
    CANCELLED_BY_CALLER = "CANCELLED_BY_CALLER"  # DELETE /v1/jobs/{id}; the message names the key

    @property
    def is_permanent(self) -> bool:
        return self in PERMANENT_ERRORS


PERMANENT_ERRORS = frozenset(
    {
        ErrorCode.INVALID_MEDIA,
        ErrorCode.NO_FACE,
        ErrorCode.AUDIO_TOO_LONG,
        ErrorCode.NO_SPEECH,
        ErrorCode.MEDIA_TOO_LARGE,
        ErrorCode.INPUT_NOT_FOUND,
        ErrorCode.DEADLINE_EXCEEDED,
    }
)

# `cancel_after` bounds (seconds from submission): at least a second, at most a week.
CANCEL_AFTER_MIN = 1
CANCEL_AFTER_MAX = 7 * 24 * 3600

BlendMode = Literal["jaw", "raw", "neck"]
# The blend mask's Gaussian blur: the offline script's kernel (k = 0.05 x the crop side) or the
# realtime script's (0.1 x: a wider, softer seam). docs/api.md argues the default.
MaskBlur = Literal["offline", "realtime"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AvatarOptions(_Strict):
    """How an avatar is prepared. Part of the avatar id: other options, other preparation."""

    bbox_shift: Annotated[int, Field(ge=BBOX_SHIFT_MIN, le=BBOX_SHIFT_MAX, strict=True)] = 0
    extra_margin: Annotated[int, Field(ge=EXTRA_MARGIN_MIN, le=EXTRA_MARGIN_MAX, strict=True)] = 10
    fps: Annotated[int, Field(ge=FPS_MIN, le=FPS_MAX, strict=True)] = 25
    blend_mode: BlendMode = "jaw"
    mask_blur: MaskBlur = "offline"


class RenderOptions(_Strict):
    """Per-job rendering switches."""

    skip_silence: bool = True
    sync_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3


class MediaRef(_Strict):
    """An object in our own buckets. Never a URL: the service does not fetch from caller hosts."""

    bucket: str
    key: str
    sha256: str | None = None


class JobMessage(_Strict):
    """The SQS message body of one job."""

    schema_version: Literal[1] = 1
    job_id: str
    tenant: str
    lane: Lane
    avatar_id: str
    avatar: MediaRef
    avatar_options: AvatarOptions = AvatarOptions()
    audio: MediaRef
    options: RenderOptions = RenderOptions()
    correlation_id: str
    submitted_at: str  # ISO-8601 UTC
    batch_size_hint: int | None = None  # set when an OOM handed the job back with a smaller batch
    has_webhook: bool = False  # the URL itself stays in the job record, never in the message
    # ISO-8601 UTC: not started by then -> EXPIRED; still rendering then -> CANCELLED.
    deadline_at: str | None = None


class StageTimings(_Strict):
    """Milliseconds per stage of one job."""

    queue_wait_ms: float | None = None
    download_ms: float | None = None
    prepare_ms: float | None = None
    speak_ms: float | None = None
    encode_ms: float | None = None
    upload_ms: float | None = None


class JobError(_Strict):
    code: ErrorCode
    message: str


class CompletionEvent(_Strict):
    """Published to the completion topic (attributes `status`, `tenant`) and POSTed to webhooks."""

    schema_version: Literal[1] = 1
    type: Literal["job.succeeded", "job.failed", "job.cancelled", "job.expired"]
    job_id: str
    tenant: str
    status: JobStatus
    lane: Lane
    correlation_id: str
    output: MediaRef | None = None
    frames: int | None = None
    fps: float | None = None
    sync_confidence: float | None = None
    low_sync: bool | None = None
    weights: Literal["official", "custom", "random"] | None = None
    timings: StageTimings = StageTimings()
    error: JobError | None = None
    finished_at: str


# SNS message attributes that subscribers filter on.
SNS_ATTRIBUTE_STATUS = "status"
SNS_ATTRIBUTE_TENANT = "tenant"
