"""The job API and its two background handlers.

- `api`: API Gateway REST API (regional) -> one Lambda for every route under /v1. Tenants call it
  with an API key; one key per tenant on the stage's usage plan (throttle + quota), and the
  handler maps the key id to the tenant through `MUSETALK_API_KEY_TENANTS`. The REST API, keys,
  routes and gateway errors are built by `rest_api`; this module builds the functions.
- `sweeper`: on a schedule, re-sends jobs whose queue message was never confirmed sent and
  touches the lane queues so SQS keeps their CloudWatch metrics.
- `dead_letters`: consumes both lanes' DLQs, marks the job FAILED and publishes the failure.
- `webhook_deliveries`: consumes the webhook deliveries queue (redeliveries requested through the
  API, webhooks the worker could not deliver) and sends each job's final event, signed.

The code asset is our own `runtime/api` and `runtime/common` packages, nothing else; Powertools
(with pydantic) comes from the public Powertools for AWS Lambda (Python) V3 layer, pinned to the
tested version (`powertools_layer`). No Docker, no credentials at synth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, Fn, IgnoreMode, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.components.job_resources import JobResources
from infra.components.nag import (
    acknowledge,
    acknowledge_kms_data_keys,
    acknowledge_table_indexes,
    grant_listing,
    grant_objects_under,
)
from infra.components.powertools_layer import powertools_layer
from infra.components.rest_api import add_routes, rest_api, tenant_keys
from runtime.common.events import WEBHOOK_HANDLER_TIMEOUT_SECONDS
from runtime.common.keys import (
    AVATAR_CACHE_KEY_PATTERN,
    AVATAR_CACHE_PREFIX,
    OUTPUT_KEY_PATTERN,
    PREVIEW_PLAYLIST_KEY_PATTERN,
    RENDERED_CACHE_KEY_PATTERN,
    SEGMENT_KEY_PATTERN,
    UPLOAD_KEY_PATTERN,
)
from runtime.common.metrics import NAMESPACE
from runtime.common.names import EnvVar, Lane

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64


# Docker-style patterns: everything out, then our two packages back in. Directories that are
# excluded are never walked, so staging does not read .venv or node_modules.
LAMBDA_ASSET_EXCLUDES = [
    "*",
    "!runtime",
    "runtime/*",
    "!runtime/__init__.py",
    "!runtime/api",
    "!runtime/common",
    "**/__pycache__",
    "**/*.pyc",
    "runtime/api/requirements*.txt",
]
_BATCH_SIZE = 10
DEAD_LETTER_HANDLER_TIMEOUT_SECONDS = 60
# AWS recommends a source queue visibility of six times the consuming function's timeout.
DEAD_LETTER_QUEUE_VISIBILITY_SECONDS = 6 * DEAD_LETTER_HANDLER_TIMEOUT_SECONDS


@dataclass(frozen=True, kw_only=True)
class ApiResources(JobResources):
    dead_letter_queues: dict[Lane, sqs.IQueue]
    webhook_dead_letter_queue: sqs.IQueue  # undeliverable webhooks, alarmed on, polled by none
    idempotency_table: dynamodb.ITable


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    stage: str
    name_prefix: str  # ResourceNames.prefix: names the REST API, usage plan and keys
    tenants: tuple[str, ...]
    throttle_rate: float  # per tenant key (usage plan)
    throttle_burst: int
    stage_throttle_rate: float  # all tenants together (the stage's method settings)
    stage_throttle_burst: int
    quota_per_day: int
    limits_json: str
    sweeper_interval_minutes: int
    job_record_ttl_days: int
    log_retention: logs.RetentionDays
    cors_allowed_origins: tuple[str, ...] = ()  # browser pages' origins (infra/api_cors.py)


class JobApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resources: ApiResources,
        settings: ApiSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self._resources = resources
        self._settings = settings
        self._code = lambda_.Code.from_asset(
            str(REPO_ROOT), exclude=LAMBDA_ASSET_EXCLUDES, ignore_mode=IgnoreMode.DOCKER
        )
        self._powertools = powertools_layer(self, "Powertools")
        self.rest_api = rest_api(self, settings)
        self.usage_plan, self.api_keys = tenant_keys(self, self.rest_api, settings)
        # All three functions read one Settings (runtime/api/settings.py), validated at cold
        # start; a variable is a name, not a permission: the grants below stay per function.
        self._environment = {
            str(EnvVar.STAGE): settings.stage,
            str(EnvVar.JOBS_TABLE): resources.jobs_table.table_name,
            str(EnvVar.IDEMPOTENCY_TABLE): resources.idempotency_table.table_name,
            str(EnvVar.UPLOADS_BUCKET): resources.uploads.bucket_name,
            str(EnvVar.OUTPUTS_BUCKET): resources.outputs.bucket_name,
            str(EnvVar.AVATAR_CACHE_BUCKET): resources.avatar_cache.bucket_name,
            str(EnvVar.INTERACTIVE_QUEUE_URL): resources.queues[Lane.INTERACTIVE].queue_url,
            str(EnvVar.BATCH_QUEUE_URL): resources.queues[Lane.BATCH].queue_url,
            str(EnvVar.COMPLETION_TOPIC_ARN): resources.completion_topic.topic_arn,
            str(EnvVar.WEBHOOK_QUEUE_URL): resources.webhook_queue.queue_url,
            str(EnvVar.API_KEY_TENANTS): key_tenants_json(
                {tenant: key.key_id for tenant, key in self.api_keys.items()}
            ),
            str(EnvVar.LIMITS_JSON): settings.limits_json,
            str(EnvVar.JOB_RECORD_TTL_DAYS): str(settings.job_record_ttl_days),
            str(EnvVar.CORS_ALLOWED_ORIGINS): json.dumps(list(settings.cors_allowed_origins)),
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
        }
        self.handler = self._api_handler()
        add_routes(self, self.rest_api, self.handler, settings.cors_allowed_origins)
        self.sweeper = self._sweeper()
        self.dead_letters = self._dead_letter_handler()
        self.webhook_deliveries = self._webhook_deliveries()

    # Functions ------------------------------------------------------------------------------

    def _python_function(
        self,
        construct_id: str,
        *,
        handler: str,
        description: str,
        timeout: Duration,
        memory_size: int = 512,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=self._settings.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        function = lambda_.Function(
            self,
            construct_id,
            runtime=PYTHON_RUNTIME,
            architecture=ARCHITECTURE,
            code=self._code,
            handler=handler,
            description=description,
            timeout=timeout,
            memory_size=memory_size,
            layers=[self._powertools],
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            # No POWERTOOLS_SERVICE_NAME: Metrics would add a `service` dimension and the
            # dashboard matches metrics on exactly {Service, Lane} (runtime.common.metrics).
            environment=self._environment,
        )
        acknowledge(
            function,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            "AWSLambdaBasicExecutionRole is the minimal managed policy for the function's logs.",
        )
        acknowledge(
            function,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray trace segments (tracing is on) have no resource-level permissions.",
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "Pinned to the newest Python runtime the Powertools V3 layer and our tests cover; "
            "bump together with POWERTOOLS_LAYER_PARAMETER.",
        )
        return function

    def _api_handler(self) -> lambda_.Function:
        r = self._resources
        function = self._python_function(
            "Handler",
            handler="runtime.api.entrypoints.rest.lambda_handler",
            description="MuseTalk job API: every route under /v1",
            timeout=Duration.seconds(29),
        )
        # Item reads/writes and index queries only: the API never scans or batch-writes.
        r.jobs_table.grant(
            function,
            "dynamodb:GetItem",
            "dynamodb:Query",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:DescribeTable",
        )
        # What Powertools' DynamoDBPersistenceLayer calls.
        r.idempotency_table.grant(
            function,
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        )
        for queue in r.queues.values():
            queue.grant_send_messages(function)
        self._grant_api_objects(function)
        # Cancelling publishes a job.cancelled event.
        r.completion_topic.grant_publish(function)
        # Webhook redelivery requests.
        r.webhook_queue.grant_send_messages(function)
        acknowledge_kms_data_keys(function)
        acknowledge_table_indexes(function, r.jobs_table)
        return function

    def _grant_api_objects(self, function: lambda_.Function) -> None:
        """The API's S3 rights, each on the key pattern it builds (runtime/common/keys.py)."""
        r = self._resources
        # Presigned POST into an upload's key; HEAD and ranged reads (s3:GetObject) of what
        # arrived; purge deletes it.
        grant_objects_under(
            function,
            r.uploads,
            UPLOAD_KEY_PATTERN,
            "s3:PutObject",
            "s3:GetObject",
            "s3:DeleteObject",
            why="Uploads (tenants/<t>/uploads/<id>/<kind>): presigned POST, checked, purged.",
        )
        grant_listing(function, r.uploads)
        # Presigned GETs of a job's output and preview segments; purge deletes them, and cancel
        # the segments of an earlier attempt (listing the job's segments prefix).
        for pattern, what in ((OUTPUT_KEY_PATTERN, "output"), (SEGMENT_KEY_PATTERN, "segments")):
            grant_objects_under(
                function,
                r.outputs,
                pattern,
                "s3:GetObject",
                "s3:DeleteObject",
                why=f"A job's {what} ({pattern}): presigned download or preview, purged.",
            )
        # Purge deletes the job's content-addressed render too; the API never reads the cache.
        grant_objects_under(
            function,
            r.outputs,
            RENDERED_CACHE_KEY_PATTERN,
            "s3:DeleteObject",
            why="The purged job's render in the output cache (rendered/<model>/<hash>.mp4).",
        )
        grant_listing(function, r.outputs)
        # The live preview's playlist is rewritten on each status read (runtime/api/preview.py).
        grant_objects_under(
            function,
            r.outputs,
            PREVIEW_PLAYLIST_KEY_PATTERN,
            "s3:PutObject",
            "s3:PutObjectTagging",  # written tagged, for the previews' lifecycle rule
            why="Only the preview playlists (tenants/<t>/jobs/<id>/segments/preview.m3u8).",
        )
        # Purge erases the prepared avatar (a face's latents) under every model version: it lists
        # the cache's version folders only, and never reads an object there.
        grant_objects_under(
            function,
            r.avatar_cache,
            AVATAR_CACHE_KEY_PATTERN,
            "s3:DeleteObject",
            why="The purged job's prepared avatar (prepared/<model>/<avatar id>.bin).",
        )
        grant_listing(function, r.avatar_cache, folders_under=AVATAR_CACHE_PREFIX)

    def _sweeper(self) -> lambda_.Function:
        r = self._resources
        function = self._python_function(
            "Sweeper",
            handler="runtime.api.entrypoints.sweeper.lambda_handler",
            description="Re-sends jobs never confirmed sent; keeps unpolled queues awake",
            timeout=Duration.seconds(120),
            memory_size=256,
        )
        r.jobs_table.grant(function, "dynamodb:Query", "dynamodb:GetItem", "dynamodb:UpdateItem")
        # SendMessage to re-send; its GetQueueAttributes (the grant includes it) keeps each lane
        # queue awake for CloudWatch (runtime/api/queue_wake.py). The lane DLQs need nothing:
        # the dead-letter handler's event source mapping polls them.
        for queue in r.queues.values():
            queue.grant_send_messages(function)
        # Nothing polls the undeliverable webhooks' queue: kept awake for its alarm the same way.
        r.webhook_dead_letter_queue.grant(function, "sqs:GetQueueAttributes")
        function.add_environment(
            str(EnvVar.WEBHOOK_DEAD_LETTER_QUEUE_URL), r.webhook_dead_letter_queue.queue_url
        )
        acknowledge_table_indexes(function, r.jobs_table)
        events.Rule(
            self,
            "SweepSchedule",
            description="Re-send jobs stuck in the unsent index; keep unpolled queues awake",
            schedule=events.Schedule.rate(
                Duration.minutes(self._settings.sweeper_interval_minutes)
            ),
            targets=[events_targets.LambdaFunction(function, retry_attempts=0)],
        )
        return function

    def _dead_letter_handler(self) -> lambda_.Function:
        r = self._resources
        function = self._python_function(
            "DeadLetters",
            handler="runtime.api.entrypoints.dead_letters.lambda_handler",
            description="Marks jobs whose message reached a dead-letter queue as FAILED",
            timeout=Duration.seconds(DEAD_LETTER_HANDLER_TIMEOUT_SECONDS),
            memory_size=256,
        )
        r.jobs_table.grant(function, "dynamodb:GetItem", "dynamodb:UpdateItem")
        acknowledge_table_indexes(function, r.jobs_table)
        r.completion_topic.grant_publish(function)
        acknowledge_kms_data_keys(function)
        # A job failed here loses its render segments and playlist at once, by key (counted from
        # the record, never listed): delete on the segment keys only, no read, no list.
        grant_objects_under(
            function,
            r.outputs,
            SEGMENT_KEY_PATTERN,
            "s3:DeleteObject",
            why="Render segments (tenants/<t>/jobs/<id>/segments/) of jobs it fails.",
        )
        for dlq in r.dead_letter_queues.values():
            function.add_event_source(
                event_sources.SqsEventSource(
                    dlq, batch_size=_BATCH_SIZE, report_batch_item_failures=True
                )
            )
        return function

    def _webhook_deliveries(self) -> lambda_.Function:
        r = self._resources
        function = self._python_function(
            "WebhookDeliveries",
            handler="runtime.api.entrypoints.webhook_deliveries.lambda_handler",
            description="Sends a job's final event to its webhook (redeliveries, worker give-ups)",
            timeout=Duration.seconds(WEBHOOK_HANDLER_TIMEOUT_SECONDS),
            memory_size=256,
        )
        # Only this function (and the worker) can read the signing secret.
        function.add_environment(str(EnvVar.WEBHOOK_SECRET_ARN), r.webhook_secret.secret_arn)
        r.webhook_secret.grant_read(function)
        # Reads the job (URL, final record) and appends each attempt to its event log.
        r.jobs_table.grant(function, "dynamodb:GetItem", "dynamodb:UpdateItem")
        acknowledge_table_indexes(function, r.jobs_table)
        acknowledge_kms_data_keys(function)
        function.add_event_source(
            event_sources.SqsEventSource(
                r.webhook_queue, batch_size=1, report_batch_item_failures=True
            )
        )
        return function


def key_tenants_json(key_ids: Mapping[str, str]) -> str:
    """`{"<api key id>": "<tenant>", ...}`, built with Fn::Join because the key ids exist only
    at deploy time."""
    parts = ["{"]
    for index, (tenant, key_id) in enumerate(key_ids.items()):
        parts += [("," if index else "") + '"', key_id, f'":{json.dumps(tenant)}']
    parts.append("}")
    return Fn.join("", parts)
