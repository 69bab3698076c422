"""One lane's GPU worker: task definition, ECS service, and its task count (`task_scaling`).

Each task holds one GPU, loads the model once and serves its lane's queue. The service names no
desired count: a deploy keeps what autoscaling set, and the scalable target's minimum holds the
warm tasks.

The task role holds only what the worker uses: its lane's queue, read/update (never delete or
scan) on the jobs table, read uploads and weights, write outputs and the avatar cache, publish
completions and read the webhook secret. Metrics go out as EMF log lines (no cloudwatch:Put*).
Task scale-in protection goes through the ECS agent endpoint, which acts with the task role, so the
role may set and read protection on the tasks of its own cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.components.job_resources import JobResources
from infra.components.nag import (
    acknowledge,
    acknowledge_kms_data_keys,
    acknowledge_table_indexes,
    grant_objects,
    grant_objects_under,
)
from infra.components.task_scaling import LaneScaling, TaskScaling
from runtime.common.cost import HOST_INFO_CONTAINER_DIR, HOST_INFO_HOST_DIR
from runtime.common.keys import AOT_ARTIFACTS_KEY_PATTERN, SEGMENT_KEY_PATTERN
from runtime.common.names import EnvVar, Lane
from runtime.engine.encoder_presets import DEFAULT_PRESET

HEALTH_PORT = 8080
MODELS_DIR = "/models"
# The engine's fp16 weight cache (and compile artifacts) beside the models: `<models>.cache`.
MODELS_CACHE_DIR = f"{MODELS_DIR}.cache"
# Model download + load happens before /healthz turns healthy; ECS allows at most 300 s here.
_HEALTH_START_PERIOD = Duration.seconds(300)
_HEALTH_CHECK = (
    "import sys, urllib.request; "
    f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{HEALTH_PORT}/healthz', timeout=4)"
    ".status == 200 else 1)"
)


@dataclass(frozen=True, kw_only=True)
class WorkerResources(JobResources):
    """Everything the worker touches, shared by both lanes' services."""

    weights: s3.IBucket


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    stage: str
    heartbeat_seconds: int
    visibility_timeout_seconds: int
    stop_timeout_seconds: int
    max_receive_count: int
    limits_json: str
    cpu_units: int
    memory_reservation_mib: int
    avatar_cache_memory_bytes: int
    avatar_cache_expire_days: int
    log_retention: logs.RetentionDays
    gpu_prices_json: str = "{}"  # runtime.common.cost: USD per instance-hour by type
    compile: str = "aot"  # MUSETALK_COMPILE: "aot" (packages when published) or "off"
    x264_preset: str = DEFAULT_PRESET  # MUSETALK_X264_PRESET: the engine's encoder preset
    share_render_cache_across_tenants: bool = False  # StageConfig's switch (default per tenant)


class GpuWorkerService(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        lane: Lane,
        cluster: ecs.ICluster,
        image: ecs.ContainerImage,
        resources: WorkerResources,
        settings: WorkerSettings,
        scaling: LaneScaling,
        capacity_provider_strategies: list[ecs.CapacityProviderStrategy],
    ) -> None:
        super().__init__(scope, construct_id)
        if scaling.max_tasks < max(scaling.min_tasks, 1):
            raise ValueError(f"{lane} lane: max_tasks must be >= max(min_tasks, 1)")
        queue = resources.queues[lane]

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=settings.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.task_definition = ecs.Ec2TaskDefinition(
            self, "Task", network_mode=ecs.NetworkMode.BRIDGE
        )
        container = self._worker_container(lane, image, resources, settings)
        self._mount_volumes(container)
        self._grant(self.task_definition.task_role, queue, resources)
        self._grant_task_protection(self.task_definition.task_role, cluster)

        self.service = ecs.Ec2Service(
            self,
            "Service",
            cluster=cluster,
            task_definition=self.task_definition,
            capacity_provider_strategies=capacity_provider_strategies,
            # Warm tasks stay up during a deployment; new ones start on new hosts first.
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            enable_ecs_managed_tags=True,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        self.scaling = TaskScaling(
            self, "TaskCount", cluster=cluster, service=self.service, queue=queue, scaling=scaling
        )

        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            "Environment variables carry resource names, URLs and tuning values only; the one "
            "secret (webhook signing key) is read at runtime from Secrets Manager by ARN.",
        )
        acknowledge(
            self.task_definition.obtain_execution_role(),
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; image pulls and log "
            "writes are scoped to the image repository and the lane's log group.",
        )

    def _worker_container(
        self,
        lane: Lane,
        image: ecs.ContainerImage,
        resources: WorkerResources,
        settings: WorkerSettings,
    ) -> ecs.ContainerDefinition:
        return self.task_definition.add_container(
            "worker",
            image=image,
            gpu_count=1,
            cpu=settings.cpu_units,
            memory_reservation_mib=settings.memory_reservation_mib,
            stop_timeout=Duration.seconds(settings.stop_timeout_seconds),
            linux_parameters=ecs.LinuxParameters(self, "Linux", init_process_enabled=True),
            logging=ecs.LogDrivers.aws_logs(stream_prefix=lane.value, log_group=self.log_group),
            environment=self._environment(lane, resources, settings),
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-c", _HEALTH_CHECK],
                interval=Duration.seconds(30),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=_HEALTH_START_PERIOD,
            ),
        )

    def _mount_volumes(self, container: ecs.ContainerDefinition) -> None:
        # A host-wide Docker volume: weights survive task restarts on the same host (no
        # re-download after a deploy or a crash). A new volume takes the owner of the image's
        # MODELS_DIR, so a non-root worker can write it.
        self._mount_host_wide(container, "models", MODELS_DIR)
        # Its fp16 copy too, so a new task loads cached weights (~0.1 s) instead of converting
        # the 3.4 GB UNet again (~3 s); the image creates the directory for the worker user.
        self._mount_host_wide(container, "models-cache", MODELS_CACHE_DIR)
        # The host's instance type, written by the host's user data (the container has no IMDS).
        self.task_definition.add_volume(
            name="host-info", host=ecs.Host(source_path=HOST_INFO_HOST_DIR)
        )
        container.add_mount_points(
            ecs.MountPoint(
                source_volume="host-info", container_path=HOST_INFO_CONTAINER_DIR, read_only=True
            )
        )

    def _mount_host_wide(self, container: ecs.ContainerDefinition, name: str, path: str) -> None:
        """A writable Docker volume shared by the tasks of one host."""
        self.task_definition.add_volume(
            name=name,
            docker_volume_configuration=ecs.DockerVolumeConfiguration(
                scope=ecs.Scope.SHARED, autoprovision=True, driver="local"
            ),
        )
        container.add_mount_points(
            ecs.MountPoint(source_volume=name, container_path=path, read_only=False)
        )

    @staticmethod
    def _environment(
        lane: Lane, resources: WorkerResources, settings: WorkerSettings
    ) -> dict[str, str]:
        environment = {
            EnvVar.STAGE: settings.stage,
            EnvVar.LANES: lane.value,
            EnvVar.UPLOADS_BUCKET: resources.uploads.bucket_name,
            EnvVar.OUTPUTS_BUCKET: resources.outputs.bucket_name,
            EnvVar.WEIGHTS_BUCKET: resources.weights.bucket_name,
            EnvVar.AVATAR_CACHE_BUCKET: resources.avatar_cache.bucket_name,
            EnvVar.JOBS_TABLE: resources.jobs_table.table_name,
            EnvVar.COMPLETION_TOPIC_ARN: resources.completion_topic.topic_arn,
            EnvVar.WEBHOOK_SECRET_ARN: resources.webhook_secret.secret_arn,
            EnvVar.WEBHOOK_QUEUE_URL: resources.webhook_queue.queue_url,
            EnvVar.GPU_PRICES_JSON: settings.gpu_prices_json,
            EnvVar.LIMITS_JSON: settings.limits_json,
            EnvVar.MODELS_DIR: MODELS_DIR,
            EnvVar.HEARTBEAT_SECONDS: str(settings.heartbeat_seconds),
            EnvVar.VISIBILITY_TIMEOUT_SECONDS: str(settings.visibility_timeout_seconds),
            EnvVar.STOP_TIMEOUT_SECONDS: str(settings.stop_timeout_seconds),
            EnvVar.MAX_RECEIVE_COUNT: str(settings.max_receive_count),
            EnvVar.AVATAR_CACHE_MEMORY_BYTES: str(settings.avatar_cache_memory_bytes),
            # A cache hit older than half the expiry is re-put, so avatars in use never expire.
            EnvVar.AVATAR_CACHE_REFRESH_DAYS: str(settings.avatar_cache_expire_days / 2),
            EnvVar.HEALTH_PORT: str(HEALTH_PORT),
            EnvVar.DEVICE: "cuda",
            EnvVar.DTYPE: "float16",
            EnvVar.COMPILE: settings.compile,
            EnvVar.X264_PRESET: settings.x264_preset,
            EnvVar.SHARE_RENDER_CACHE_ACROSS_TENANTS: (
                "true" if settings.share_render_cache_across_tenants else "false"
            ),
            # Containers cannot reach IMDS (hop limit 1), so the SDK learns the region here.
            "AWS_REGION": Aws.REGION,
            "AWS_DEFAULT_REGION": Aws.REGION,
            # Both URLs (not secrets); the worker polls the lanes in MUSETALK_LANES, and IAM lets
            # it consume only its own lane's queue.
            EnvVar.INTERACTIVE_QUEUE_URL: resources.queues[Lane.INTERACTIVE].queue_url,
            EnvVar.BATCH_QUEUE_URL: resources.queues[Lane.BATCH].queue_url,
        }
        return {str(name): value for name, value in environment.items()}

    @staticmethod
    def _grant(role: iam.IRole, queue: sqs.IQueue, resources: WorkerResources) -> None:
        queue.grant_consume_messages(role)
        # A job whose content another job is rendering goes back as a new, delayed message
        # (a visibility change would use up a receive and move a waiting job towards the DLQ).
        queue.grant_send_messages(role)
        resources.jobs_table.grant(
            role,
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:DescribeTable",
        )
        acknowledge_table_indexes(role, resources.jobs_table)
        grant_objects(role, resources.uploads, "s3:GetObject")
        grant_objects(role, resources.weights, "s3:GetObject")
        # Compiled-model packages: the first worker of a (GPU, torch, weights) combination builds
        # them and shares them under this prefix only (docs/worker.md, cold start).
        grant_objects_under(
            role,
            resources.weights,
            AOT_ARTIFACTS_KEY_PATTERN,
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            why="Compiled-model packages (aot-artifacts/) are shared by the first worker per key.",
        )
        # Outputs and prepared avatars are written (multipart for large files) and read back
        # (output cache hits, avatar cache hits and refresh-by-copy).
        for bucket in (resources.outputs, resources.avatar_cache):
            grant_objects(role, bucket, "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload")
        # A render's segments are tagged to expire after the preview's grace, and deleted at once
        # when no output or preview needs them (docs/api.md, resume and preview).
        grant_objects_under(
            role,
            resources.outputs,
            SEGMENT_KEY_PATTERN,
            "s3:DeleteObject",
            # Segments and playlists are written tagged for their lifecycle rule.
            "s3:PutObjectTagging",
            why="Render segments (tenants/<t>/jobs/<id>/segments/): tagged, deleted when unused.",
        )
        resources.completion_topic.grant_publish(role)
        acknowledge_kms_data_keys(role)
        resources.webhook_secret.grant_read(role)
        resources.webhook_queue.grant_send_messages(role)

    @staticmethod
    def _grant_task_protection(role: iam.IRole, cluster: ecs.ICluster) -> None:
        """Scale-in protection while a job runs (the agent calls ECS with the task role)."""
        tasks_of_cluster = Stack.of(cluster).format_arn(
            service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*"
        )
        iam.Grant.add_to_principal(
            grantee=role,
            actions=["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
            resource_arns=[tasks_of_cluster],
        )
        cluster_id = Stack.of(cluster).get_logical_id(cluster.node.default_child)  # type: ignore[arg-type]
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:"
            f"<AWS::AccountId>:task/<{cluster_id}>/*]",
            "Task ids are not known before the tasks start; the grant stays inside one cluster.",
        )
