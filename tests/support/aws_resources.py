"""Create one deployment's named resources (from `ResourceNames`) on a local endpoint.

Mirrors what the stack creates, at the level the runtime depends on: buckets, the jobs table with
its `by_tenant` and sparse `unsent` indexes and TTL, the idempotency table, lane queues with their
DLQs, and the completion topic. `Resources.env()` is the environment the stack would give the
Lambdas and the worker.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

import boto3

from runtime.common.events import WEBHOOK_MAX_RECEIVES
from runtime.common.limits import DEFAULT_LIMITS, Limits
from runtime.common.names import (
    BucketRole,
    EnvVar,
    IdempotencyTable,
    JobsTable,
    Lane,
    ResourceNames,
)


@dataclass(frozen=True)
class Resources:
    names: ResourceNames
    endpoint: str
    queue_urls: dict[Lane, str]
    dead_letter_queue_urls: dict[Lane, str]
    completion_topic_arn: str
    webhook_queue_url: str = ""
    webhook_dead_letter_queue_url: str = ""
    api_key_tenants: dict[str, str] = field(default_factory=dict)
    limits: Limits = DEFAULT_LIMITS

    def bucket(self, role: BucketRole) -> str:
        return self.names.bucket(role)

    def env(self) -> dict[str, str]:
        return {
            EnvVar.STAGE.value: self.names.stage,
            EnvVar.UPLOADS_BUCKET.value: self.bucket(BucketRole.UPLOADS),
            EnvVar.OUTPUTS_BUCKET.value: self.bucket(BucketRole.OUTPUTS),
            EnvVar.WEIGHTS_BUCKET.value: self.bucket(BucketRole.WEIGHTS),
            EnvVar.AVATAR_CACHE_BUCKET.value: self.bucket(BucketRole.AVATAR_CACHE),
            EnvVar.JOBS_TABLE.value: self.names.jobs_table,
            EnvVar.IDEMPOTENCY_TABLE.value: self.names.idempotency_table,
            EnvVar.INTERACTIVE_QUEUE_URL.value: self.queue_urls[Lane.INTERACTIVE],
            EnvVar.BATCH_QUEUE_URL.value: self.queue_urls[Lane.BATCH],
            EnvVar.COMPLETION_TOPIC_ARN.value: self.completion_topic_arn,
            EnvVar.API_KEY_TENANTS.value: json.dumps(self.api_key_tenants),
            EnvVar.LIMITS_JSON.value: self.limits.model_dump_json(),
            EnvVar.AWS_ENDPOINT_URL.value: self.endpoint,
            EnvVar.WEBHOOK_QUEUE_URL.value: self.webhook_queue_url,
        }


def create_resources(
    names: ResourceNames,
    endpoint: str,
    *,
    api_key_tenants: dict[str, str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Resources:
    def client(service: str) -> Any:
        return local_client(service, endpoint, names.region)

    s3 = client("s3")
    for role in BucketRole:
        s3.create_bucket(Bucket=names.bucket(role))
    _create_jobs_table(client("dynamodb"), names.jobs_table)
    client("dynamodb").create_table(
        TableName=names.idempotency_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": IdempotencyTable.PARTITION_KEY, "AttributeType": "S"}
        ],
        KeySchema=[{"AttributeName": IdempotencyTable.PARTITION_KEY, "KeyType": "HASH"}],
    )
    sqs = client("sqs")
    queue_urls: dict[Lane, str] = {}
    dlq_urls: dict[Lane, str] = {}
    for lane in Lane:
        dlq_url = sqs.create_queue(QueueName=names.dead_letter_queue(lane))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        queue_urls[lane] = sqs.create_queue(
            QueueName=names.queue(lane),
            Attributes={
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
            },
        )["QueueUrl"]
        dlq_urls[lane] = dlq_url
    topic_arn = client("sns").create_topic(Name=names.completion_topic)["TopicArn"]
    webhook_dlq_url = sqs.create_queue(QueueName=names.webhook_dead_letter_queue)["QueueUrl"]
    webhook_dlq_arn = sqs.get_queue_attributes(
        QueueUrl=webhook_dlq_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    webhook_queue_url = sqs.create_queue(
        QueueName=names.webhook_queue,
        Attributes={
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": webhook_dlq_arn, "maxReceiveCount": WEBHOOK_MAX_RECEIVES}
            )
        },
    )["QueueUrl"]
    return Resources(
        names=names,
        endpoint=endpoint,
        queue_urls=queue_urls,
        dead_letter_queue_urls=dlq_urls,
        completion_topic_arn=topic_arn,
        webhook_queue_url=webhook_queue_url,
        webhook_dead_letter_queue_url=webhook_dlq_url,
        api_key_tenants=dict(api_key_tenants or {}),
        limits=limits,
    )


@functools.cache
def local_client(service: str, endpoint: str, region: str) -> Any:
    """One client per service and endpoint for the whole test session (creating one parses the
    service model, which costs more than most test calls)."""
    return boto3.client(service, endpoint_url=endpoint, region_name=region)


def _create_jobs_table(dynamodb: Any, name: str) -> None:
    def string(attribute: str) -> dict[str, str]:
        return {"AttributeName": attribute, "AttributeType": "S"}

    def index(index_name: str, partition: str, sort: str) -> dict[str, Any]:
        return {
            "IndexName": index_name,
            "KeySchema": [
                {"AttributeName": partition, "KeyType": "HASH"},
                {"AttributeName": sort, "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }

    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            string(JobsTable.PARTITION_KEY),
            string(JobsTable.TENANT_INDEX_PARTITION_KEY),
            string(JobsTable.TENANT_INDEX_SORT_KEY),
            string(JobsTable.UNSENT_INDEX_PARTITION_KEY),
            string(JobsTable.QUEUED_INDEX_PARTITION_KEY),
        ],
        KeySchema=[{"AttributeName": JobsTable.PARTITION_KEY, "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            index(
                JobsTable.TENANT_INDEX,
                JobsTable.TENANT_INDEX_PARTITION_KEY,
                JobsTable.TENANT_INDEX_SORT_KEY,
            ),
            index(
                JobsTable.UNSENT_INDEX,
                JobsTable.UNSENT_INDEX_PARTITION_KEY,
                JobsTable.UNSENT_INDEX_SORT_KEY,
            ),
            index(
                JobsTable.QUEUED_INDEX,
                JobsTable.QUEUED_INDEX_PARTITION_KEY,
                JobsTable.QUEUED_INDEX_SORT_KEY,
            ),
        ],
    )
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": JobsTable.TTL_ATTRIBUTE},
    )
