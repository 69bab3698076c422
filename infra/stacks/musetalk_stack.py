"""The one stack of a stage: composes the components and wires them together.

It defines no bare resources: every resource lives in a component under `infra/components/`.
Physical names come from `runtime.common.names.ResourceNames` with the deploy-time account and
region, so local mode can create the same names on the emulator.
"""

from __future__ import annotations

import json
from pathlib import Path

from aws_cdk import App, Aws, CfnOutput, Stack, Tags, Validations
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from infra.components.gpu_capacity import GpuCapacity
from infra.components.gpu_worker_service import GpuWorkerService, WorkerResources, WorkerSettings
from infra.components.job_api import (
    DEAD_LETTER_QUEUE_VISIBILITY_SECONDS,
    ApiResources,
    ApiSettings,
    JobApi,
)
from infra.components.job_queues import JobQueues, LaneQueueSettings, WebhookQueues
from infra.components.job_resources import JobResources
from infra.components.job_tables import JobTables
from infra.components.network import Network
from infra.components.notifications import Notifications
from infra.components.observability import AlarmThresholds, LaneWatch, Observability
from infra.components.storage import Storage
from infra.components.task_scaling import LaneScaling
from infra.config import LaneConfig, StageConfig
from runtime.api.cors import is_browser_origin
from runtime.common.events import WEBHOOK_QUEUE_VISIBILITY_SECONDS
from runtime.common.keys import is_safe_id
from runtime.common.names import Lane, ResourceNames
from runtime.engine.encoder_presets import check_preset

REPO_ROOT = Path(__file__).resolve().parents[2]
# A spot instance gets a two-minute notice; the container must be stopped within it, after the
# agent has seen the notice (it polls instance metadata) and ECS has sent SIGTERM, with time left
# for the hand-back to reach SQS and DynamoDB.
SPOT_NOTICE_SECONDS = 120
MAX_STOP_TIMEOUT_SECONDS = 90
# Each sweep touches the lane queues (runtime/api/queue_wake.py): SQS stops a queue's CloudWatch
# metrics after six hours without an action, and the scaling alarms read them. An hour at most
# keeps a queue awake even when five sweeps in a row fail.
MAX_SWEEPER_INTERVAL_MINUTES = 60
# The worker's MUSETALK_COMPILE values (runtime.worker.engine_loader.COMPILE_MODES).
WORKER_COMPILE_MODES = ("aot", "off")

# CloudWatch Logs accepts only these retention periods.
_RETENTION: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


class MuseTalkStack(Stack):
    """Composes the components in dependency order: state, compute, API, then what watches them."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, description: str
    ) -> None:
        super().__init__(scope, construct_id, description=description)
        validate_config(config)
        names = ResourceNames(stage=config.stage, account=Aws.ACCOUNT_ID, region=Aws.REGION)
        lanes: dict[Lane, LaneConfig] = {
            Lane.INTERACTIVE: config.interactive,
            Lane.BATCH: config.batch,
        }
        storage = Storage(
            self,
            "Storage",
            names=names,
            uploads_expire_days=config.uploads_expire_days,
            outputs_expire_days=config.outputs_expire_days,
            avatar_cache_expire_days=config.avatar_cache_expire_days,
            cors_allowed_origins=config.cors_allowed_origins,
        )
        tables = JobTables(self, "Tables", names=names)
        queues, webhook_queues = self._queues(config, names, lanes)
        notifications = Notifications(
            self, "Notifications", names=names, alarm_emails=config.alarm_emails
        )
        capacity = self._gpu_capacity(config)
        job_resources = JobResources(
            queues={lane: queues.queue(lane) for lane in lanes},
            jobs_table=tables.jobs,
            uploads=storage.uploads,
            outputs=storage.outputs,
            avatar_cache=storage.avatar_cache,
            completion_topic=notifications.completion_topic,
            webhook_secret=notifications.webhook_secret,
            webhook_queue=webhook_queues.queue,
        )
        services = self._workers(
            config,
            lanes,
            capacity,
            WorkerResources(**job_resources.shared(), weights=storage.weights),
        )
        api = self._api(
            config,
            names,
            ApiResources(
                **job_resources.shared(),
                dead_letter_queues={lane: queues.dead_letter_queue(lane) for lane in lanes},
                webhook_dead_letter_queue=webhook_queues.dead_letter_queue,
                idempotency_table=tables.idempotency,
            ),
        )
        self._observability(
            config,
            names,
            api,
            lanes=[
                LaneWatch(
                    lane=lane,
                    queue=queues.queue(lane),
                    dead_letter_queue=queues.dead_letter_queue(lane),
                    service=services[lane].service,
                    cluster=capacity.cluster,
                    oldest_message_slo_seconds=lane_config.oldest_message_slo_seconds,
                )
                for lane, lane_config in lanes.items()
            ],
            alarm_topic=notifications.alarm_topic,
            undeliverable_webhooks=webhook_queues.dead_letter_queue,
        )
        self._outputs(storage, tables, notifications, capacity)

    def _queues(
        self, config: StageConfig, names: ResourceNames, lanes: dict[Lane, LaneConfig]
    ) -> tuple[JobQueues, WebhookQueues]:
        queues = JobQueues(
            self,
            "Queues",
            names=names,
            visibility_timeout_seconds=config.visibility_timeout_seconds,
            dead_letter_visibility_timeout_seconds=DEAD_LETTER_QUEUE_VISIBILITY_SECONDS,
            lanes={
                lane: LaneQueueSettings(max_receive_count=lane_config.max_receive_count)
                for lane, lane_config in lanes.items()
            },
        )
        webhook_queues = WebhookQueues(
            self,
            "Webhooks",
            names=names,
            visibility_seconds=WEBHOOK_QUEUE_VISIBILITY_SECONDS,
        )
        return queues, webhook_queues

    def _gpu_capacity(self, config: StageConfig) -> GpuCapacity:
        """The network and the GPU hosts on it."""
        network = Network(
            self,
            "Network",
            nat_gateways=config.nat_gateways,
            interface_endpoints=config.interface_endpoints,
            flow_log_retention=_RETENTION[config.log_retention_days],
        )
        return GpuCapacity(
            self,
            "GpuCapacity",
            vpc=network.vpc,
            host_subnets=network.host_subnets,
            host_security_group=network.host_security_group,
            instance_types=config.gpu_instance_types,
            max_instances=config.max_instances,
            root_volume_gib=config.gpu_root_volume_gib,
            container_stop_timeout_seconds=config.task_stop_timeout_seconds,
            on_demand_fallback=config.on_demand_fallback_for_interactive,
        )

    def _workers(
        self,
        config: StageConfig,
        lanes: dict[Lane, LaneConfig],
        capacity: GpuCapacity,
        resources: WorkerResources,
    ) -> dict[Lane, GpuWorkerService]:
        """One worker service per lane, all from the one image."""
        image = ecs.ContainerImage.from_asset(
            str(REPO_ROOT),
            file="docker/Dockerfile",
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        services: dict[Lane, GpuWorkerService] = {}
        for lane, lane_config in lanes.items():
            services[lane] = GpuWorkerService(
                self,
                f"{lane.value.title()}Worker",
                lane=lane,
                cluster=capacity.cluster,
                image=image,
                resources=resources,
                settings=_worker_settings(config, lane_config),
                scaling=LaneScaling(
                    min_tasks=lane_config.min_tasks,
                    max_tasks=lane_config.max_tasks,
                    backlog_per_task_target=lane_config.backlog_per_task_target,
                ),
                capacity_provider_strategies=_strategy(capacity, lane, lane_config),
            )
            # A service naming a capacity provider fails to create until the provider is
            # associated with the cluster. The association is a child of the cluster created at
            # synth, so depending on the cluster construct orders it.
            services[lane].service.node.add_dependency(capacity.cluster)
        return services

    def _api(self, config: StageConfig, names: ResourceNames, resources: ApiResources) -> JobApi:
        return JobApi(
            self,
            "Api",
            resources=resources,
            settings=ApiSettings(
                stage=config.stage,
                name_prefix=names.prefix,
                tenants=config.tenants,
                throttle_rate=config.api_throttle_rate,
                throttle_burst=config.api_throttle_burst,
                stage_throttle_rate=config.api_stage_throttle_rate,
                stage_throttle_burst=config.api_stage_throttle_burst,
                quota_per_day=config.api_quota_per_day,
                limits_json=config.limits.model_dump_json(),
                sweeper_interval_minutes=config.sweeper_interval_minutes,
                job_record_ttl_days=config.job_record_ttl_days,
                log_retention=_RETENTION[config.log_retention_days],
                cors_allowed_origins=config.cors_allowed_origins,
            ),
        )

    def _observability(
        self,
        config: StageConfig,
        names: ResourceNames,
        api: JobApi,
        *,
        lanes: list[LaneWatch],
        alarm_topic: sns.ITopic,
        undeliverable_webhooks: sqs.IQueue,
    ) -> None:
        Observability(
            self,
            "Observability",
            dashboard_name=names.prefix,
            rest_api=api.rest_api,
            lanes=lanes,
            alarm_topic=alarm_topic,
            thresholds=AlarmThresholds(
                failure_rate_percent=config.failure_rate_alarm_percent,
                low_sync_score=config.low_sync_alarm_threshold,
                gpu_memory_percent=config.gpu_memory_alarm_percent,
            ),
            undeliverable_webhooks=undeliverable_webhooks,
            functions={
                "ApiHandler": api.handler,
                "Sweeper": api.sweeper,
                "DeadLetterHandler": api.dead_letters,
                "WebhookDeliveries": api.webhook_deliveries,
            },
        )

    def _outputs(
        self,
        storage: Storage,
        tables: JobTables,
        notifications: Notifications,
        capacity: GpuCapacity,
    ) -> None:
        """What a user needs after `cdk deploy`: where to upload weights, what to subscribe to."""
        for output_id, value in {
            "UploadsBucket": storage.uploads.bucket_name,
            "OutputsBucket": storage.outputs.bucket_name,
            "WeightsBucket": storage.weights.bucket_name,
            "AvatarCacheBucket": storage.avatar_cache.bucket_name,
            "JobsTable": tables.jobs.table_name,
            "CompletionTopicArn": notifications.completion_topic.topic_arn,
            "AlarmTopicArn": notifications.alarm_topic.topic_arn,
            "ClusterName": capacity.cluster.cluster_name,
        }.items():
            CfnOutput(self, output_id, value=value)


def _worker_settings(config: StageConfig, lane_config: LaneConfig) -> WorkerSettings:
    return WorkerSettings(
        stage=config.stage,
        heartbeat_seconds=config.heartbeat_seconds,
        visibility_timeout_seconds=config.visibility_timeout_seconds,
        stop_timeout_seconds=config.task_stop_timeout_seconds,
        max_receive_count=lane_config.max_receive_count,
        limits_json=config.limits.model_dump_json(),
        cpu_units=config.worker_cpu_units,
        memory_reservation_mib=config.worker_memory_reservation_mib,
        avatar_cache_memory_bytes=config.avatar_cache_memory_bytes,
        avatar_cache_expire_days=config.avatar_cache_expire_days,
        log_retention=_RETENTION[config.log_retention_days],
        gpu_prices_json=json.dumps(dict(config.gpu_prices_usd_per_hour)),
        compile=config.worker_compile,
        x264_preset=config.worker_x264_preset,
        share_render_cache_across_tenants=config.share_render_cache_across_tenants,
    )


def build_stack(app: App, config: StageConfig) -> MuseTalkStack:
    """The stack of one stage, tagged. Run `add_checks(app)` once per app to check it."""
    stack = MuseTalkStack(
        app,
        f"MuseTalk-{config.stage}",
        config=config,
        description=f"MuseTalk lip-sync service ({config.stage}): API, queues, GPU workers",
    )
    Tags.of(stack).add("project", "musetalk")
    Tags.of(stack).add("stage", config.stage)
    return stack


def add_checks(app: App) -> None:
    """cdk-nag AwsSolutions on every synth: any unacknowledged finding fails the synth. The
    acknowledgements, each with its reason, are written into the template metadata as an audit
    trail."""
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
    )


def _strategy(
    capacity: GpuCapacity, lane: Lane, lane_config: LaneConfig
) -> list[ecs.CapacityProviderStrategy]:
    spot = ecs.CapacityProviderStrategy(
        capacity_provider=capacity.spot.capacity_provider_name, weight=1
    )
    if lane is Lane.INTERACTIVE and capacity.on_demand is not None:
        # The warm tasks (base) run on on-demand hosts, so a spot reclaim never takes the lane
        # to zero; bursts above them go to spot.
        return [
            ecs.CapacityProviderStrategy(
                capacity_provider=capacity.on_demand.capacity_provider_name,
                base=lane_config.min_tasks,
                weight=0,
            ),
            spot,
        ]
    return [spot]


def validate_config(config: StageConfig) -> None:
    """Reject a stage config the stack could deploy but the service could not run on."""
    if config.log_retention_days not in _RETENTION:
        raise ValueError(f"log_retention_days must be one of {sorted(_RETENTION)}")
    if config.worker_compile not in WORKER_COMPILE_MODES:
        raise ValueError(f"worker_compile must be one of {WORKER_COMPILE_MODES}")
    check_preset(config.worker_x264_preset, name="worker_x264_preset")
    if not 0 < config.task_stop_timeout_seconds <= MAX_STOP_TIMEOUT_SECONDS:
        raise ValueError(f"task_stop_timeout_seconds must be in 1..{MAX_STOP_TIMEOUT_SECONDS}")
    if not 1 <= config.sweeper_interval_minutes <= MAX_SWEEPER_INTERVAL_MINUTES:
        raise ValueError(
            f"sweeper_interval_minutes must be in 1..{MAX_SWEEPER_INTERVAL_MINUTES}: each sweep "
            "keeps the lane queues awake, and SQS stops a queue's metrics (which scale the lanes) "
            "after six idle hours"
        )
    if config.interactive.min_tasks < 1:
        raise ValueError("the interactive lane keeps at least one warm task (min_tasks >= 1)")
    if config.visibility_timeout_seconds < 2 * config.heartbeat_seconds:
        raise ValueError("visibility_timeout_seconds must cover at least two heartbeats")
    bad_origins = [o for o in config.cors_allowed_origins if not is_browser_origin(o)]
    if bad_origins:
        raise ValueError(
            "cors_allowed_origins must be exact origins, https://host[:port] (http only for "
            f"localhost or 127.0.0.1), without a path, '*' or 'null': {bad_origins}"
        )
    if config.api_stage_throttle_rate < config.api_throttle_rate:
        raise ValueError("api_stage_throttle_rate must be at least one tenant's api_throttle_rate")
    bad = [tenant for tenant in config.tenants if not is_safe_id(tenant)]
    if bad or len(set(config.tenants)) != len(config.tenants):
        raise ValueError(f"tenants must be unique ids matching [A-Za-z0-9_-]{{1,64}}: {bad}")
