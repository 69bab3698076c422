"""Creates the stack's buckets, tables, queues, topics and secret on the emulator.

Everything is derived from `ResourceNames`, the key-schema classes and the stage's `StageConfig`
(the same inputs the CDK components use), iterating the `BucketRole` and `Lane` enums, so a new
lane or bucket shows up here without a second hand-kept list.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from string import ascii_letters, digits
from typing import Any

from infra.config import LaneConfig, StageConfig
from runtime.common.bucket_cors import bucket_cors_rules
from runtime.common.events import WEBHOOK_MAX_RECEIVES, WEBHOOK_QUEUE_VISIBILITY_SECONDS
from runtime.common.names import (
    BucketRole,
    EnvVar,
    IdempotencyTable,
    JobsTable,
    Lane,
    ResourceNames,
)
from runtime.common.preview import PREVIEW_EXPIRE_DAYS, PREVIEW_EXPIRY_RULE, PREVIEW_TAG

# moto's default account; local resources have no real account.
LOCAL_ACCOUNT = "123456789012"
LOCAL_REGION = "us-east-1"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
LONG_POLL_SECONDS = 20


@dataclass(frozen=True)
class LocalResources:
    """What `provision` created: the values the stack would hand to the runtime as env vars."""

    names: ResourceNames
    config: StageConfig
    endpoint_url: str
    buckets: dict[BucketRole, str]
    queue_urls: dict[Lane, str]
    dead_letter_queue_urls: dict[Lane, str]
    completion_topic_arn: str
    alarm_topic_arn: str
    webhook_secret_arn: str
    webhook_queue_url: str
    webhook_dead_letter_queue_url: str

    def runtime_env(self) -> dict[str, str]:
        """The environment the stack gives both the API Lambda and the worker."""
        return {
            EnvVar.STAGE: self.names.stage,
            EnvVar.UPLOADS_BUCKET: self.buckets[BucketRole.UPLOADS],
            EnvVar.OUTPUTS_BUCKET: self.buckets[BucketRole.OUTPUTS],
            EnvVar.WEIGHTS_BUCKET: self.buckets[BucketRole.WEIGHTS],
            EnvVar.AVATAR_CACHE_BUCKET: self.buckets[BucketRole.AVATAR_CACHE],
            EnvVar.JOBS_TABLE: self.names.jobs_table,
            EnvVar.IDEMPOTENCY_TABLE: self.names.idempotency_table,
            EnvVar.INTERACTIVE_QUEUE_URL: self.queue_urls[Lane.INTERACTIVE],
            EnvVar.BATCH_QUEUE_URL: self.queue_urls[Lane.BATCH],
            EnvVar.COMPLETION_TOPIC_ARN: self.completion_topic_arn,
            EnvVar.WEBHOOK_SECRET_ARN: self.webhook_secret_arn,
            EnvVar.WEBHOOK_QUEUE_URL: self.webhook_queue_url,
            EnvVar.WEBHOOK_DEAD_LETTER_QUEUE_URL: self.webhook_dead_letter_queue_url,
            EnvVar.LIMITS_JSON: self.config.limits.model_dump_json(),
            EnvVar.JOB_RECORD_TTL_DAYS: str(self.config.job_record_ttl_days),
            EnvVar.CORS_ALLOWED_ORIGINS: json.dumps(list(self.config.cors_allowed_origins)),
            EnvVar.AWS_ENDPOINT_URL: self.endpoint_url,
        }


def lane_config(config: StageConfig, lane: Lane) -> LaneConfig:
    lanes = {Lane.INTERACTIVE: config.interactive, Lane.BATCH: config.batch}
    return lanes[lane]


def provision(
    session: Any, *, names: ResourceNames, config: StageConfig, endpoint_url: str
) -> LocalResources:
    """Create every named resource of one stage on the emulator at `endpoint_url`."""

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint_url, region_name=names.region)

    buckets = _create_buckets(client("s3"), names, config)
    _create_tables(client("dynamodb"), names)
    queue_urls, dlq_urls = _create_queues(client("sqs"), names, config)
    webhook_queue_url, webhook_dlq_url = _create_webhook_queues(client("sqs"), names)
    sns = client("sns")
    completion = sns.create_topic(Name=names.completion_topic)["TopicArn"]
    alarms = sns.create_topic(Name=names.alarm_topic)["TopicArn"]
    secret = client("secretsmanager").create_secret(
        Name=names.webhook_secret, SecretString=webhook_signing_secret()
    )["ARN"]
    return LocalResources(
        names=names,
        config=config,
        endpoint_url=endpoint_url,
        queue_urls=queue_urls,
        dead_letter_queue_urls=dlq_urls,
        completion_topic_arn=completion,
        alarm_topic_arn=alarms,
        webhook_secret_arn=secret,
        webhook_queue_url=webhook_queue_url,
        webhook_dead_letter_queue_url=webhook_dlq_url,
        buckets=buckets,
    )


def webhook_signing_secret() -> str:
    """Shaped as the stack generates it (48 letters and digits, which is also valid base64)."""
    return "".join(secrets.choice(ascii_letters + digits) for _ in range(48))


def _create_buckets(s3: Any, names: ResourceNames, config: StageConfig) -> dict[BucketRole, str]:
    expiry_days = {
        BucketRole.UPLOADS: config.uploads_expire_days,
        BucketRole.OUTPUTS: config.outputs_expire_days,
        BucketRole.AVATAR_CACHE: config.avatar_cache_expire_days,
    }
    buckets = {}
    for role in BucketRole:
        bucket = names.bucket(role)
        s3.create_bucket(Bucket=bucket)
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        cors_rules = bucket_cors_rules(role, config.cors_allowed_origins)
        if cors_rules:
            s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": cors_rules})
        if role in expiry_days:
            rules = [
                {
                    "ID": "expire-personal-data",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "Expiration": {"Days": expiry_days[role]},
                }
            ]
            if role is BucketRole.OUTPUTS:
                rules.append(
                    {
                        "ID": PREVIEW_EXPIRY_RULE,
                        "Status": "Enabled",
                        "Filter": {"Tag": {"Key": PREVIEW_TAG[0], "Value": PREVIEW_TAG[1]}},
                        "Expiration": {"Days": PREVIEW_EXPIRE_DAYS},
                    }
                )
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": rules}
            )
        buckets[role] = bucket
    return buckets


def _create_tables(dynamodb: Any, names: ResourceNames) -> None:
    string = "S"
    all_attributes = {"ProjectionType": "ALL"}
    dynamodb.create_table(
        TableName=names.jobs_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": string}
            for name in (
                JobsTable.PARTITION_KEY,
                JobsTable.TENANT_INDEX_PARTITION_KEY,
                JobsTable.TENANT_INDEX_SORT_KEY,
                JobsTable.UNSENT_INDEX_PARTITION_KEY,
                JobsTable.QUEUED_INDEX_PARTITION_KEY,
            )
        ],
        KeySchema=[{"AttributeName": JobsTable.PARTITION_KEY, "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": JobsTable.TENANT_INDEX,
                "KeySchema": [
                    {"AttributeName": JobsTable.TENANT_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": JobsTable.TENANT_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": all_attributes,
            },
            {
                "IndexName": JobsTable.UNSENT_INDEX,
                "KeySchema": [
                    {"AttributeName": JobsTable.UNSENT_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": JobsTable.UNSENT_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": all_attributes,
            },
            {
                "IndexName": JobsTable.QUEUED_INDEX,
                "KeySchema": [
                    {"AttributeName": JobsTable.QUEUED_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": JobsTable.QUEUED_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    )
    dynamodb.update_time_to_live(
        TableName=names.jobs_table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": JobsTable.TTL_ATTRIBUTE},
    )
    dynamodb.create_table(
        TableName=names.idempotency_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": IdempotencyTable.PARTITION_KEY, "AttributeType": string}
        ],
        KeySchema=[{"AttributeName": IdempotencyTable.PARTITION_KEY, "KeyType": "HASH"}],
    )
    dynamodb.update_time_to_live(
        TableName=names.idempotency_table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": IdempotencyTable.TTL_ATTRIBUTE},
    )


def _create_queues(
    sqs: Any, names: ResourceNames, config: StageConfig
) -> tuple[dict[Lane, str], dict[Lane, str]]:
    queue_urls: dict[Lane, str] = {}
    dlq_urls: dict[Lane, str] = {}
    for lane in Lane:
        dlq_url = sqs.create_queue(
            QueueName=names.dead_letter_queue(lane),
            Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)},
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        redrive = {
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": lane_config(config, lane).max_receive_count,
        }
        queue_urls[lane] = sqs.create_queue(
            QueueName=names.queue(lane),
            Attributes={
                "VisibilityTimeout": str(config.visibility_timeout_seconds),
                "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
                "ReceiveMessageWaitTimeSeconds": str(LONG_POLL_SECONDS),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        dlq_urls[lane] = dlq_url
    return queue_urls, dlq_urls


def _create_webhook_queues(sqs: Any, names: ResourceNames) -> tuple[str, str]:
    """The webhook deliveries queue and its dead-letter queue, as the stack makes them (URLs)."""
    dlq_url = sqs.create_queue(
        QueueName=names.webhook_dead_letter_queue,
        Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": WEBHOOK_MAX_RECEIVES}
    queue_url = sqs.create_queue(
        QueueName=names.webhook_queue,
        Attributes={
            "VisibilityTimeout": str(WEBHOOK_QUEUE_VISIBILITY_SECONDS),
            "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    return str(queue_url), str(dlq_url)
