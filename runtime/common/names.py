"""Resource names shared by the CDK stack and local mode, and the environment variables that carry
them to the runtime.

The stack creates resources with these names and passes them to the Lambdas and the worker through
the variables in `EnvVar`; local mode creates the same names on the emulator. Keeping both sides on
this module is what makes "the same buckets, tables, queues and topics" true by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Lane(StrEnum):
    """Job lanes. Interactive keeps warm GPU tasks; batch scales to zero."""

    INTERACTIVE = "interactive"
    BATCH = "batch"


class BucketRole(StrEnum):
    UPLOADS = "uploads"
    OUTPUTS = "outputs"
    WEIGHTS = "weights"
    AVATAR_CACHE = "avatar-cache"
    ACCESS_LOGS = "access-logs"


class EnvVar(StrEnum):
    """Environment variables set by the stack (and local mode) and read by the runtime."""

    STAGE = "MUSETALK_STAGE"
    UPLOADS_BUCKET = "MUSETALK_UPLOADS_BUCKET"
    OUTPUTS_BUCKET = "MUSETALK_OUTPUTS_BUCKET"
    WEIGHTS_BUCKET = "MUSETALK_WEIGHTS_BUCKET"
    AVATAR_CACHE_BUCKET = "MUSETALK_AVATAR_CACHE_BUCKET"
    JOBS_TABLE = "MUSETALK_JOBS_TABLE"
    IDEMPOTENCY_TABLE = "MUSETALK_IDEMPOTENCY_TABLE"
    INTERACTIVE_QUEUE_URL = "MUSETALK_INTERACTIVE_QUEUE_URL"
    BATCH_QUEUE_URL = "MUSETALK_BATCH_QUEUE_URL"
    COMPLETION_TOPIC_ARN = "MUSETALK_COMPLETION_TOPIC_ARN"
    WEBHOOK_SECRET_ARN = "MUSETALK_WEBHOOK_SECRET_ARN"  # noqa: S105  # nosec B105 (a variable name)
    # Webhook deliveries queue: redeliveries (API) and webhooks the worker could not deliver;
    # consumed by the webhook-deliveries Lambda, dead-lettered when still undeliverable.
    WEBHOOK_QUEUE_URL = "MUSETALK_WEBHOOK_QUEUE_URL"
    # The sweeper only: the undeliverable webhooks' queue, kept awake for its alarm.
    WEBHOOK_DEAD_LETTER_QUEUE_URL = "MUSETALK_WEBHOOK_DEAD_LETTER_QUEUE_URL"
    API_KEY_TENANTS = "MUSETALK_API_KEY_TENANTS"
    LIMITS_JSON = "MUSETALK_LIMITS_JSON"
    JOB_RECORD_TTL_DAYS = "MUSETALK_JOB_RECORD_TTL_DAYS"  # API: TTL of job/upload/avatar items
    # API: JSON list of browser origins it answers with CORS headers (StageConfig's origins).
    CORS_ALLOWED_ORIGINS = "MUSETALK_CORS_ALLOWED_ORIGINS"
    AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"  # set only in local mode (the emulator)
    # Worker only.
    MODELS_DIR = "MUSETALK_MODELS_DIR"  # local weights cache, synced from the weights bucket
    LANES = "MUSETALK_LANES"  # comma-separated, in priority order, e.g. "interactive,batch"
    HEARTBEAT_SECONDS = "MUSETALK_HEARTBEAT_SECONDS"
    VISIBILITY_TIMEOUT_SECONDS = "MUSETALK_VISIBILITY_TIMEOUT_SECONDS"
    STOP_TIMEOUT_SECONDS = "MUSETALK_STOP_TIMEOUT_SECONDS"
    MAX_RECEIVE_COUNT = "MUSETALK_MAX_RECEIVE_COUNT"
    AVATAR_CACHE_MEMORY_BYTES = "MUSETALK_AVATAR_CACHE_MEMORY_BYTES"
    # A bucket hit older than this is re-put so the bucket's expiry counts from its last use
    # (the stack sets half of StageConfig.avatar_cache_expire_days).
    AVATAR_CACHE_REFRESH_DAYS = "MUSETALK_AVATAR_CACHE_REFRESH_DAYS"
    HEALTH_PORT = "MUSETALK_HEALTH_PORT"
    DEVICE = "MUSETALK_DEVICE"  # "cuda" in the image, "cpu" in tests
    DTYPE = "MUSETALK_DTYPE"  # "float16" on CUDA
    ENGINE_FACTORY = "MUSETALK_ENGINE_FACTORY"  # "module:callable"; default the MuseTalk engine
    # "off" (default): eager models; "aot": compiled models from AOTInductor packages, shared
    # through the weights bucket (docs/worker.md, start-up).
    COMPILE = "MUSETALK_COMPILE"
    # libx264 preset of the engine's encoder (default the engine's, `encoder_presets`); part of
    # what a resumed render's segments must match (docs/worker.md).
    X264_PRESET = "MUSETALK_X264_PRESET"
    POLL_WAIT_SECONDS = "MUSETALK_POLL_WAIT_SECONDS"  # SQS long-poll wait on the first lane
    RETRY_BASE_SECONDS = "MUSETALK_RETRY_BASE_SECONDS"  # transient retry backoff, doubled per try
    MIN_BATCH_SIZE = "MUSETALK_MIN_BATCH_SIZE"  # OOM halving floor of a first attempt
    SEGMENT_FRAMES = "MUSETALK_SEGMENT_FRAMES"  # frames per resumable segment (default 125)
    # Segment encoders running at once (default from the host's cores: 2 from 8 cores up).
    SEGMENT_ENCODERS = "MUSETALK_SEGMENT_ENCODERS"
    TASK_PROTECTION_MINUTES = "MUSETALK_TASK_PROTECTION_MINUTES"
    SPOT_NOTICE = "MUSETALK_SPOT_NOTICE"  # "true": poll IMDS for the spot interruption notice
    GPU_PRICES_JSON = "MUSETALK_GPU_PRICES_JSON"  # {"g5.xlarge": 1.006, ...} USD per hour
    HOST_INFO_FILE = "MUSETALK_HOST_INFO_FILE"  # the host's instance type (runtime.common.cost)
    # Local mode only: allow webhooks to http:// and private addresses (the emulator's hosts).
    WEBHOOK_ALLOW_PRIVATE = "MUSETALK_WEBHOOK_ALLOW_PRIVATE"
    # "true": equal content shares one render (output cache, render claim, media-error verdict)
    # across tenants; unset/"false": per tenant, so no tenant learns what another rendered.
    SHARE_RENDER_CACHE_ACROSS_TENANTS = "MUSETALK_SHARE_RENDER_CACHE_ACROSS_TENANTS"


@dataclass(frozen=True, kw_only=True)
class ResourceNames:
    """Physical names of every named resource of one deployment.

    `account` and `region` may be CloudFormation tokens in the stack and literals locally; bucket
    names include both because S3 names are global.
    """

    stage: str
    account: str
    region: str

    @property
    def prefix(self) -> str:
        return f"musetalk-{self.stage}"

    def bucket(self, role: BucketRole) -> str:
        return f"{self.prefix}-{role.value}-{self.account}-{self.region}"

    @property
    def jobs_table(self) -> str:
        return f"{self.prefix}-jobs"

    @property
    def idempotency_table(self) -> str:
        return f"{self.prefix}-idempotency"

    def queue(self, lane: Lane) -> str:
        return f"{self.prefix}-{lane.value}"

    def dead_letter_queue(self, lane: Lane) -> str:
        return f"{self.prefix}-{lane.value}-dlq"

    @property
    def webhook_queue(self) -> str:
        return f"{self.prefix}-webhooks"

    @property
    def webhook_dead_letter_queue(self) -> str:
        return f"{self.prefix}-webhooks-dlq"

    @property
    def completion_topic(self) -> str:
        return f"{self.prefix}-job-completion"

    @property
    def alarm_topic(self) -> str:
        return f"{self.prefix}-alarms"

    @property
    def webhook_secret(self) -> str:
        return f"{self.prefix}/webhook-signing-secret"


class JobsTable:
    """Key schema of the jobs table (single table: jobs, uploads and avatars).

    Items are keyed `pk = "JOB#<job_id>"`, `"UPLOAD#<tenant>#<upload_id>"` or
    `"AVATAR#<tenant>#<avatar_id>"`; the `by_tenant` index lists one tenant's items of one kind by
    time (`tenant_kind = "<tenant>#job"`, `created_at` ISO-8601 UTC).
    """

    PARTITION_KEY = "pk"
    TENANT_INDEX = "by_tenant"
    TENANT_INDEX_PARTITION_KEY = "tenant_kind"
    TENANT_INDEX_SORT_KEY = "created_at"
    TTL_ATTRIBUTE = "expires_at"
    # Sparse index of jobs whose queue message is not yet confirmed sent: the API sets
    # `unsent_lane` when it writes the job and removes it once SQS accepted the message; the
    # sweeper re-sends whatever stays in this index too long.
    UNSENT_INDEX = "unsent"
    UNSENT_INDEX_PARTITION_KEY = "unsent_lane"
    UNSENT_INDEX_SORT_KEY = "created_at"
    # Sparse index of QUEUED jobs per lane, by submission time (queue position): `queued_lane`
    # is set while a job is QUEUED and removed by every transition out of QUEUED.
    QUEUED_INDEX = "queued"
    QUEUED_INDEX_PARTITION_KEY = "queued_lane"
    QUEUED_INDEX_SORT_KEY = "created_at"
    # One item per lane (`pk = "LANE#<lane>"`) where workers publish their recent render rates.
    LANE_STATS_PREFIX = "LANE#"
    # One item per render content hash (`pk = "RENDER#<sha256>"`): the worker's render claim.
    RENDER_CLAIM_PREFIX = "RENDER#"


class IdempotencyTable:
    """The schema aws-lambda-powertools' DynamoDBPersistenceLayer expects by default."""

    PARTITION_KEY = "id"
    TTL_ATTRIBUTE = "expiration"
