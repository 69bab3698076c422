"""Local mode creates the stack's resources, named and shaped from the shared definitions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config import stage_config
from runtime.common.names import BucketRole, EnvVar, JobsTable, Lane, ResourceNames
from runtime.local.resources import (
    LOCAL_ACCOUNT,
    LOCAL_REGION,
    LocalResources,
    lane_config,
    provision,
)

NAMES = ResourceNames(stage="dev", account=LOCAL_ACCOUNT, region=LOCAL_REGION)
CONFIG = stage_config("dev")


@pytest.fixture(scope="module")
def resources(session: Any, endpoint: str) -> LocalResources:
    return provision(session, names=NAMES, config=CONFIG, endpoint_url=endpoint)


def test_every_bucket_role_has_its_bucket(
    resources: LocalResources, session: Any, endpoint: str
) -> None:
    s3 = session.client("s3", endpoint_url=endpoint)
    existing = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    assert {NAMES.bucket(role) for role in BucketRole} <= existing
    rules = s3.get_bucket_lifecycle_configuration(Bucket=NAMES.bucket(BucketRole.UPLOADS))
    assert rules["Rules"][0]["Expiration"]["Days"] == CONFIG.uploads_expire_days
    block = s3.get_public_access_block(Bucket=NAMES.bucket(BucketRole.OUTPUTS))
    assert all(block["PublicAccessBlockConfiguration"].values())


def test_each_lane_has_a_queue_redriving_to_its_dlq(
    resources: LocalResources, session: Any, endpoint: str
) -> None:
    sqs = session.client("sqs", endpoint_url=endpoint)
    for lane in Lane:
        url = sqs.get_queue_url(QueueName=NAMES.queue(lane))["QueueUrl"]
        assert resources.queue_urls[lane] == url
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(f":{NAMES.dead_letter_queue(lane)}")
        assert int(redrive["maxReceiveCount"]) == lane_config(CONFIG, lane).max_receive_count
        assert int(attributes["VisibilityTimeout"]) == CONFIG.visibility_timeout_seconds


def test_the_jobs_table_has_the_key_schema_and_both_indexes(
    resources: LocalResources, session: Any, endpoint: str
) -> None:
    table = session.client("dynamodb", endpoint_url=endpoint).describe_table(
        TableName=NAMES.jobs_table
    )["Table"]
    assert table["KeySchema"] == [{"AttributeName": JobsTable.PARTITION_KEY, "KeyType": "HASH"}]
    indexes = {index["IndexName"]: index["KeySchema"] for index in table["GlobalSecondaryIndexes"]}
    assert indexes[JobsTable.TENANT_INDEX] == [
        {"AttributeName": JobsTable.TENANT_INDEX_PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": JobsTable.TENANT_INDEX_SORT_KEY, "KeyType": "RANGE"},
    ]
    assert indexes[JobsTable.UNSENT_INDEX][0]["AttributeName"] == (
        JobsTable.UNSENT_INDEX_PARTITION_KEY
    )


def test_the_runtime_environment_names_what_was_created(
    resources: LocalResources, session: Any, endpoint: str
) -> None:
    env = resources.runtime_env()
    assert env[EnvVar.JOBS_TABLE] == NAMES.jobs_table
    assert env[EnvVar.BATCH_QUEUE_URL] == resources.queue_urls[Lane.BATCH]
    assert env[EnvVar.AWS_ENDPOINT_URL] == endpoint
    topics = session.client("sns", endpoint_url=endpoint).list_topics()["Topics"]
    assert env[EnvVar.COMPLETION_TOPIC_ARN] in {topic["TopicArn"] for topic in topics}
    secret = session.client("secretsmanager", endpoint_url=endpoint).describe_secret(
        SecretId=env[EnvVar.WEBHOOK_SECRET_ARN]
    )
    assert secret["Name"] == NAMES.webhook_secret
