"""Per-lane input limits. The stage config sets them; the stack passes them to the API and worker
as JSON in `MUSETALK_LIMITS_JSON`; both enforce them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from runtime.common.names import Lane

MIB = 1024 * 1024


class LaneLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_audio_seconds: float = Field(gt=0)
    max_audio_bytes: int = Field(gt=0)
    max_video_bytes: int = Field(gt=0)
    max_image_bytes: int = Field(gt=0)


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lanes: dict[Lane, LaneLimits]
    max_request_body_bytes: int = Field(default=64 * 1024, gt=0)
    upload_url_expiry_seconds: int = Field(default=900, gt=0, le=3600)
    download_url_expiry_seconds: int = Field(default=900, gt=0, le=3600)
    max_video_pixels: int = Field(default=3840 * 2160, gt=0)
    # All decoded BGR frames of one avatar together (a prepared avatar holds them in memory, and
    # preparation briefly twice): 5 GiB holds 30 s of 1080p at 25 fps (4.7 GB) and keeps the
    # peak under the worker's 12 GiB reservation on a 16 GiB host.
    max_decoded_avatar_bytes: int = Field(default=5 * 1024**3, gt=0)

    def for_lane(self, lane: Lane) -> LaneLimits:
        return self.lanes[lane]


DEFAULT_LIMITS = Limits(
    lanes={
        Lane.INTERACTIVE: LaneLimits(
            max_audio_seconds=60,
            max_audio_bytes=20 * MIB,
            max_video_bytes=200 * MIB,
            max_image_bytes=20 * MIB,
        ),
        Lane.BATCH: LaneLimits(
            max_audio_seconds=600,
            max_audio_bytes=200 * MIB,
            max_video_bytes=1024 * MIB,
            max_image_bytes=20 * MIB,
        ),
    }
)
