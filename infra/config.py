"""Frozen per-stage configuration. app.py picks one by the `stage` context; nothing else reads
context or the environment."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from runtime.common.limits import DEFAULT_LIMITS, Limits
from runtime.engine.encoder_presets import DEFAULT_PRESET


@dataclass(frozen=True, kw_only=True)
class LaneConfig:
    """Capacity and queue behaviour of one lane."""

    min_tasks: int
    max_tasks: int
    backlog_per_task_target: int  # jobs (waiting + running) per task: tasks = ceil(jobs / this)
    oldest_message_slo_seconds: int  # alarm when the oldest message is older than this
    max_receive_count: int  # deliveries before a message goes to the lane's DLQ


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    stage: str
    # Retention of personal data (uploaded faces/voices, rendered outputs) and caches.
    uploads_expire_days: int
    outputs_expire_days: int
    avatar_cache_expire_days: int  # refreshed on use: the worker re-puts a hit older than half this
    job_record_ttl_days: int
    # Networking: NAT gives GPU hosts egress; interface endpoints keep AWS traffic private.
    nat_gateways: int
    interface_endpoints: bool
    # GPU fleet.
    gpu_instance_types: tuple[str, ...]
    on_demand_fallback_for_interactive: bool
    max_instances: int
    gpu_root_volume_gib: int = 100  # the CUDA image and the weights cache live on the root volume
    worker_cpu_units: int = 3072  # of 4096 on an xlarge; the rest stays with the agent and OS
    worker_memory_reservation_mib: int = 12_288  # soft limit; xlarge hosts have 16 GiB
    avatar_cache_memory_bytes: int = 4 * 1024**3  # in-memory LRU of prepared avatars per task
    # "aot": the engine runs from the AOT packages published for the fleet's card
    # (runtime.worker.publish_aot), eager until they are; "off": always eager (docs/deploy.md).
    worker_compile: str = "aot"
    # libx264 preset of the worker's encoder (MUSETALK_X264_PRESET; one of x264's, ultrafast to
    # placebo). Where x264 runs on the host's CPU it can set the render's pace; the default,
    # the engine's, trades a third more bits for 1.45x veryfast's speed on an H100's host
    # (docs/deploy.md).
    # A render in progress when this changes starts over rather than mix presets.
    worker_x264_preset: str = DEFAULT_PRESET
    interactive: LaneConfig
    batch: LaneConfig
    # The worker extends visibility every `heartbeat_seconds`; the queue timeout is a few beats.
    heartbeat_seconds: int = 30
    visibility_timeout_seconds: int = 120
    # SIGTERM to SIGKILL. Well inside the 2-minute spot notice: the agent sees the notice and ECS
    # stops the task some seconds in, and the hand-back must land before the host goes.
    task_stop_timeout_seconds: int = 90
    # API. Per tenant key (usage plan), and for all tenants together (the stage), so one busy
    # tenant cannot use up what the others get.
    api_throttle_rate: float = 20
    api_throttle_burst: int = 40
    api_stage_throttle_rate: float = 100
    api_stage_throttle_burst: int = 200
    api_quota_per_day: int = 10_000
    # One API key per tenant on the stage's usage plan; adding a tenant = add it here + deploy.
    tenants: tuple[str, ...] = ("default",)
    # Browser origins (`scheme://host[:port]`) of pages that call the API and its presigned URLs,
    # e.g. where you host the playground (docs/playground.md): CORS on the API and on the uploads
    # and outputs buckets. None by default: no page on another origin can read the answers.
    cors_allowed_origins: tuple[str, ...] = ()
    # How often the sweeper re-sends jobs whose queue message was never confirmed sent and touches
    # the lane queues so SQS keeps their CloudWatch metrics (at most 60: validate_config).
    sweeper_interval_minutes: int = 2
    log_retention_days: int = 30
    limits: Limits = field(default=DEFAULT_LIMITS)
    # Equal content (avatar, audio, options) renders once per tenant: the output cache, the render
    # claim and a media error's verdict are per tenant, so a fast cache hit or a shared failure
    # never tells a tenant what another rendered. True shares them across tenants (fewer GPU
    # renders; for single-tenant stages or tenants that trust each other).
    share_render_cache_across_tenants: bool = False
    # Alarms. Addresses here are subscribed to the alarm topic (each confirms by mail).
    alarm_emails: tuple[str, ...] = ()
    failure_rate_alarm_percent: float = 10
    low_sync_alarm_threshold: float = 0.3
    gpu_memory_alarm_percent: float = 95
    # Cost per job: USD per instance-hour by instance type (the worker multiplies by the job's
    # GPU-seconds). Defaults are us-east-1 on-demand list prices (Nov 2026), an upper bound for
    # spot; put your region's or your negotiated prices here. A type without a price: cost null.
    gpu_prices_usd_per_hour: tuple[tuple[str, float], ...] = (
        ("g4dn.xlarge", 0.526),
        ("g5.xlarge", 1.006),
        ("g5.2xlarge", 1.212),
        ("g6.xlarge", 0.805),
        ("g6.2xlarge", 0.978),
    )


_FLEET = ("g6.xlarge", "g5.xlarge", "g4dn.xlarge", "g6.2xlarge", "g5.2xlarge")

STAGES: dict[str, StageConfig] = {
    "dev": StageConfig(
        stage="dev",
        uploads_expire_days=1,
        outputs_expire_days=3,
        avatar_cache_expire_days=14,
        job_record_ttl_days=7,
        nat_gateways=1,
        interface_endpoints=False,
        gpu_instance_types=_FLEET,
        on_demand_fallback_for_interactive=False,
        max_instances=2,
        interactive=LaneConfig(
            min_tasks=1,
            max_tasks=2,
            backlog_per_task_target=2,
            oldest_message_slo_seconds=60,
            max_receive_count=3,
        ),
        batch=LaneConfig(
            min_tasks=0,
            max_tasks=2,
            backlog_per_task_target=10,
            oldest_message_slo_seconds=1800,
            max_receive_count=3,
        ),
        api_quota_per_day=2_000,
        log_retention_days=14,
        # The playground served from a clone: `python -m http.server 8000` (docs/playground.md).
        cors_allowed_origins=("http://localhost:8000",),
    ),
    "prod": StageConfig(
        stage="prod",
        uploads_expire_days=7,
        outputs_expire_days=30,
        avatar_cache_expire_days=30,
        job_record_ttl_days=90,
        nat_gateways=2,
        interface_endpoints=True,
        gpu_instance_types=_FLEET,
        on_demand_fallback_for_interactive=True,
        max_instances=20,
        interactive=LaneConfig(
            min_tasks=2,
            max_tasks=10,
            backlog_per_task_target=2,
            oldest_message_slo_seconds=30,
            max_receive_count=4,
        ),
        batch=LaneConfig(
            min_tasks=0,
            max_tasks=10,
            backlog_per_task_target=20,
            oldest_message_slo_seconds=3600,
            max_receive_count=4,
        ),
        log_retention_days=90,
    ),
}


def stage_config(stage: str) -> StageConfig:
    try:
        return STAGES[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(STAGES)}") from None


_EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+\.[^@\s,]+")


def with_alarm_emails(config: StageConfig, context_value: object) -> StageConfig:
    """The stage plus the alarm recipients given at deploy (`-c alarm_emails=a@x.com,b@y.org`)."""
    if context_value is None or context_value == "":
        return config
    emails = tuple(part.strip() for part in str(context_value).split(",") if part.strip())
    bad = [email for email in emails if not _EMAIL.fullmatch(email)]
    if bad:
        raise ValueError(f"alarm_emails: not an email address: {bad}")
    merged = tuple(dict.fromkeys(config.alarm_emails + emails))
    return replace(config, alarm_emails=merged)
