"""Request and response bodies of the public API (they generate the OpenAPI document).

Requests forbid unknown fields; ids are safe ids (no slashes or dots), so nothing a caller sends
can steer a key outside its tenant prefix.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from runtime.common.events import JobEvent
from runtime.common.jobs import (
    CANCEL_AFTER_MAX,
    CANCEL_AFTER_MIN,
    AvatarOptions,
    JobError,
    JobStatus,
    RenderOptions,
    StageTimings,
)
from runtime.common.names import Lane

SafeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
UploadKind = Literal["audio", "video", "image"]
ContentType = Literal[
    "audio/wav",
    "audio/mpeg",
    "audio/mp4",
    "video/mp4",
    "video/quicktime",
    "image/png",
    "image/jpeg",
]
# The first entry is the default for a kind; the presigned POST pins exactly one of them.
CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "audio": ("audio/wav", "audio/mpeg", "audio/mp4"),
    "video": ("video/mp4", "video/quicktime"),
    "image": ("image/png", "image/jpeg"),
}
MAX_WEBHOOK_URL_LENGTH = 2048


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class CreateUploadRequest(_Request):
    kind: UploadKind
    content_type: ContentType | None = Field(
        default=None, description="One of the kind's content types; the kind's first by default."
    )


class PresignedPost(_Response):
    url: str = Field(description="POST a multipart form here: `fields` first, then `file`.")
    fields: dict[str, str]


class UploadCreated(_Response):
    upload_id: str
    kind: UploadKind
    content_type: str
    max_bytes: int
    expires_at: str = Field(description="The upload form stops working at this time (UTC).")
    upload: PresignedPost


class CreateAvatarRequest(_Request):
    upload_id: SafeId = Field(description="A `video` or `image` upload of this tenant.")
    options: AvatarOptions = AvatarOptions()


class Avatar(_Response):
    avatar_id: str
    upload_id: str
    kind: UploadKind
    options: AvatarOptions
    created_at: str


class AvatarList(_Response):
    avatars: list[Avatar]
    next_token: str | None = None


class SubmitJobRequest(_Request):
    avatar_id: SafeId | None = Field(default=None, description="A registered avatar.")
    avatar_upload_id: SafeId | None = Field(
        default=None, description="Or a video/image upload, registered as an avatar on the fly."
    )
    avatar_options: AvatarOptions | None = Field(
        default=None, description="Preparation options when `avatar_upload_id` is used."
    )
    audio_upload_id: SafeId
    lane: Lane
    options: RenderOptions = RenderOptions()
    webhook_url: Annotated[str, StringConstraints(max_length=MAX_WEBHOOK_URL_LENGTH)] | None = (
        Field(default=None, description="https only; public hosts only. Signed by the worker.")
    )
    cancel_after: (
        Annotated[int, Field(ge=CANCEL_AFTER_MIN, le=CANCEL_AFTER_MAX, strict=True)] | None
    ) = Field(
        default=None,
        description=(
            "Seconds from submission. Not started by then: the job ends EXPIRED (no GPU time);"
            " still running then: it is stopped and ends CANCELLED (error DEADLINE_EXCEEDED)."
        ),
    )


class _QueueEstimate(_Response):
    """Where a job stands in its lane (docs/api.md, "Queue position and ETA")."""

    queue_position: int | None = Field(
        default=None, description="QUEUED jobs of the lane ahead of this one (0 = next)."
    )
    estimated_start_at: str | None = Field(
        default=None, description="Estimate (UTC), while QUEUED; null until the lane has rates."
    )
    estimated_done_at: str | None = Field(
        default=None, description="Estimate (UTC), until final; null until the lane has rates."
    )


class JobAccepted(_QueueEstimate):
    job_id: str
    status: JobStatus
    status_url: str


class Job(_QueueEstimate):
    job_id: str
    status: JobStatus
    lane: Lane
    avatar_id: str
    created_at: str
    updated_at: str
    deadline_at: str | None = Field(default=None, description="From `cancel_after` (UTC).")
    progress: float
    frames_done: int | None = None
    frames_total: int | None = None
    timings: StageTimings
    sync_confidence: float | None = None
    low_sync: bool | None = None
    weights: Literal["official", "custom", "random"] | None = Field(
        default=None,
        description="`official` when every model file matches the official release's "
        "SHA-256, `custom` for other real weights, `random` for make-weights output (demo "
        "deployments).",
    )
    error: JobError | None = None
    output_url: str | None = Field(
        default=None, description="Short-lived download link, present when SUCCEEDED."
    )
    output_url_expires_at: str | None = None
    resumed_from_frame: int | None = Field(
        default=None,
        description="The latest attempt reused the finished segments before this frame.",
    )
    preview_url: str | None = Field(
        default=None,
        description=(
            "While RENDERING with a finished segment, and for 10 minutes after SUCCEEDED: a"
            " short-lived HLS playlist of the segments so far (after SUCCEEDED, all of them;"
            " its links expire with that grace); read the job again for newer segments."
        ),
    )
    preview_url_expires_at: str | None = None
    gpu_seconds: float | None = Field(
        default=None,
        description=(
            "SUCCEEDED renders: seconds the job held its GPU task, summed over every attempt."
        ),
    )
    estimated_cost_usd: float | None = Field(
        default=None, description="gpu_seconds x the stage's price for the instance type."
    )


class JobSummary(_Response):
    job_id: str
    status: JobStatus
    lane: Lane
    created_at: str
    updated_at: str
    progress: float


class JobList(_Response):
    jobs: list[JobSummary]
    next_token: str | None = None


class JobCancelled(_Response):
    job_id: str
    status: JobStatus
    purged: bool


class JobEvents(_Response):
    """Oldest first. Status changes and webhook attempts; never URLs or payloads."""

    job_id: str
    events: list[JobEvent]
    truncated: bool = Field(
        default=False, description="The log is full; later webhook attempts are not recorded."
    )


class WebhookRedeliveryQueued(_Response):
    job_id: str
    event_type: str = Field(description="The final event that will be sent again.")
