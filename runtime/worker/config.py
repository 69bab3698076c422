"""Worker settings, read once from the environment the stack (or local mode) sets.

Everything the worker reads from `os.environ` is read here, so a missing or malformed variable
stops the process at start with the variable's name, not in the middle of a job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.common.cost import HOST_INFO_CONTAINER_DIR, HOST_INFO_FILE_NAME, parse_prices
from runtime.common.limits import DEFAULT_LIMITS, Limits
from runtime.common.names import EnvVar, Lane
from runtime.engine.engine_contract import SEGMENT_FRAMES, default_segment_encoders
from runtime.worker.engine_loader import DEFAULT_FACTORY, EngineFactoryError, x264_preset

DEFAULT_ENGINE_FACTORY = DEFAULT_FACTORY
ECS_AGENT_URI = "ECS_AGENT_URI"  # set by the ECS agent; base of the task-protection endpoint
IMDS_ENDPOINT = "AWS_EC2_METADATA_SERVICE_ENDPOINT"  # the AWS SDKs' override of the IMDS address
DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254"


class SettingsError(ValueError):
    """A required variable is missing or malformed; the message names it."""


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    stage: str
    uploads_bucket: str
    outputs_bucket: str
    weights_bucket: str | None  # None: use MODELS_DIR as it is (local mode, tests)
    avatar_cache_bucket: str
    jobs_table: str
    lanes: tuple[tuple[Lane, str], ...]  # (lane, queue url) in priority order
    completion_topic_arn: str
    webhook_secret_arn: str | None
    limits: Limits
    models_dir: Path
    heartbeat_seconds: float = 30
    visibility_timeout_seconds: int = 120
    stop_timeout_seconds: float = 120
    max_receive_count: int = 3
    avatar_cache_memory_bytes: int = 2 * 1024**3
    avatar_cache_refresh_days: float = 7
    health_port: int = 8080
    device: str = "cuda"
    dtype: str = "float16"
    engine_factory: str = DEFAULT_ENGINE_FACTORY
    poll_wait_seconds: int = 10
    retry_base_seconds: int = 15
    min_batch_size: int = 4
    segment_frames: int = SEGMENT_FRAMES  # resumable unit of a render (and a preview segment)
    segment_encoders: int = 1  # segments encoding at once (from_env: from the host's cores)
    task_protection_minutes: int = 60
    ecs_agent_uri: str | None = None
    webhook_allow_private: bool = False
    # Equal content of different tenants shares one render (cache, claim, verdict) only if True.
    share_render_cache_across_tenants: bool = False
    spot_notice_endpoint: str | None = None  # None: do not poll IMDS
    webhook_queue_url: str | None = None  # where undelivered webhooks go on (None: dropped)
    gpu_prices: Mapping[str, float] = field(default_factory=dict)  # USD per instance-hour
    host_info_file: Path = Path(HOST_INFO_CONTAINER_DIR) / HOST_INFO_FILE_NAME

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        source = os.environ if env is None else env
        reader = _Reader(source)
        lanes = _lanes(reader)
        heartbeat = reader.number(EnvVar.HEARTBEAT_SECONDS, 30.0)
        visibility = int(reader.number(EnvVar.VISIBILITY_TIMEOUT_SECONDS, 120))
        if not 0 < heartbeat < visibility:
            raise SettingsError(
                f"{EnvVar.HEARTBEAT_SECONDS} must be above 0 and below"
                f" {EnvVar.VISIBILITY_TIMEOUT_SECONDS} ({visibility}), or messages reappear mid-job"
            )
        try:  # the default factory reads it: a bad name stops the worker here, before any job
            x264_preset(source)
        except EngineFactoryError as error:
            raise SettingsError(str(error)) from None
        limits_json = source.get(EnvVar.LIMITS_JSON)
        try:
            limits = Limits.model_validate_json(limits_json) if limits_json else DEFAULT_LIMITS
        except ValueError as error:
            raise SettingsError(f"{EnvVar.LIMITS_JSON}: {error}") from None
        return cls(
            stage=source.get(EnvVar.STAGE, "dev"),
            uploads_bucket=reader.required(EnvVar.UPLOADS_BUCKET),
            outputs_bucket=reader.required(EnvVar.OUTPUTS_BUCKET),
            weights_bucket=source.get(EnvVar.WEIGHTS_BUCKET) or None,
            avatar_cache_bucket=reader.required(EnvVar.AVATAR_CACHE_BUCKET),
            jobs_table=reader.required(EnvVar.JOBS_TABLE),
            lanes=lanes,
            completion_topic_arn=reader.required(EnvVar.COMPLETION_TOPIC_ARN),
            webhook_secret_arn=source.get(EnvVar.WEBHOOK_SECRET_ARN) or None,
            limits=limits,
            models_dir=Path(reader.required(EnvVar.MODELS_DIR)),
            heartbeat_seconds=heartbeat,
            visibility_timeout_seconds=visibility,
            stop_timeout_seconds=reader.number(EnvVar.STOP_TIMEOUT_SECONDS, 120.0),
            max_receive_count=int(reader.number(EnvVar.MAX_RECEIVE_COUNT, 3)),
            avatar_cache_memory_bytes=int(
                reader.number(EnvVar.AVATAR_CACHE_MEMORY_BYTES, 2 * 1024**3)
            ),
            avatar_cache_refresh_days=reader.number(EnvVar.AVATAR_CACHE_REFRESH_DAYS, 7.0),
            health_port=int(reader.number(EnvVar.HEALTH_PORT, 8080)),
            device=source.get(EnvVar.DEVICE, "cuda"),
            dtype=source.get(EnvVar.DTYPE, "float16"),
            engine_factory=source.get(EnvVar.ENGINE_FACTORY) or DEFAULT_ENGINE_FACTORY,
            poll_wait_seconds=min(20, int(reader.number(EnvVar.POLL_WAIT_SECONDS, 10))),
            retry_base_seconds=int(reader.number(EnvVar.RETRY_BASE_SECONDS, 15)),
            min_batch_size=max(1, int(reader.number(EnvVar.MIN_BATCH_SIZE, 4))),
            segment_frames=max(1, int(reader.number(EnvVar.SEGMENT_FRAMES, SEGMENT_FRAMES))),
            segment_encoders=max(
                1, int(reader.number(EnvVar.SEGMENT_ENCODERS, default_segment_encoders()))
            ),
            task_protection_minutes=int(reader.number(EnvVar.TASK_PROTECTION_MINUTES, 60)),
            ecs_agent_uri=source.get(ECS_AGENT_URI) or None,
            webhook_allow_private=source.get(EnvVar.WEBHOOK_ALLOW_PRIVATE, "") == "true",
            share_render_cache_across_tenants=reader.switch(
                EnvVar.SHARE_RENDER_CACHE_ACROSS_TENANTS
            ),
            webhook_queue_url=source.get(EnvVar.WEBHOOK_QUEUE_URL) or None,
            gpu_prices=_prices(source.get(EnvVar.GPU_PRICES_JSON)),
            host_info_file=Path(
                source.get(EnvVar.HOST_INFO_FILE)
                or Path(HOST_INFO_CONTAINER_DIR) / HOST_INFO_FILE_NAME
            ),
            spot_notice_endpoint=(
                source.get(IMDS_ENDPOINT) or DEFAULT_IMDS_ENDPOINT
                if source.get(EnvVar.SPOT_NOTICE, "") == "true"
                else None
            ),
        )


def _lanes(reader: _Reader) -> tuple[tuple[Lane, str], ...]:
    """The lanes `MUSETALK_LANES` names, each with its queue's URL."""
    lanes: list[tuple[Lane, str]] = []
    for name in (part.strip() for part in reader.required(EnvVar.LANES).split(",")):
        if not name:
            continue
        try:
            lane = Lane(name)
        except ValueError:
            raise SettingsError(
                f"{EnvVar.LANES}: unknown lane {name!r}; expected {[m.value for m in Lane]}"
            ) from None
        queue_var = (
            EnvVar.INTERACTIVE_QUEUE_URL if lane is Lane.INTERACTIVE else EnvVar.BATCH_QUEUE_URL
        )
        lanes.append((lane, reader.required(queue_var)))
    if not lanes:
        raise SettingsError(f"{EnvVar.LANES}: name at least one lane")
    return tuple(lanes)


class _Reader:
    def __init__(self, source: Mapping[str, str]) -> None:
        self._source = source

    def required(self, name: str) -> str:
        value = self._source.get(name, "").strip()
        if not value:
            raise SettingsError(f"{name} is required")
        return value

    def switch(self, name: str) -> bool:
        """ "true" or "false" (unset: false); anything else is refused rather than guessed."""
        raw = self._source.get(name, "").strip().lower()
        if raw not in {"", "true", "false"}:
            raise SettingsError(f"{name} must be true or false, got {raw!r}")
        return raw == "true"

    def number(self, name: str, default: float) -> float:
        raw = self._source.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if value < 0:
            raise SettingsError(f"{name} must not be negative")
        return value


def _prices(raw: str | None) -> dict[str, float]:
    try:
        return parse_prices(raw)
    except ValueError as error:
        raise SettingsError(f"{EnvVar.GPU_PRICES_JSON.value}: {error}") from error
