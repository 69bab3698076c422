"""DynamoDB: the jobs table (jobs, uploads and avatars in one table) and the idempotency table that
aws-lambda-powertools' DynamoDBPersistenceLayer expects.

The key schema comes from `runtime.common.names` so the API and worker cannot drift from it.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from runtime.common.names import IdempotencyTable, JobsTable, ResourceNames

_PITR = dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True)


class JobTables(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, names: ResourceNames) -> None:
        super().__init__(scope, construct_id)

        self.jobs = dynamodb.Table(
            self,
            "Jobs",
            table_name=names.jobs_table,
            partition_key=_string(JobsTable.PARTITION_KEY),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=_PITR,
            time_to_live_attribute=JobsTable.TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        # A tenant's items of one kind, newest first.
        self.jobs.add_global_secondary_index(
            index_name=JobsTable.TENANT_INDEX,
            partition_key=_string(JobsTable.TENANT_INDEX_PARTITION_KEY),
            sort_key=_string(JobsTable.TENANT_INDEX_SORT_KEY),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        # Sparse: only jobs whose queue message is not yet confirmed sent carry `unsent_lane`. The
        # sweeper rebuilds the message from the item, so the index projects everything.
        self.jobs.add_global_secondary_index(
            index_name=JobsTable.UNSENT_INDEX,
            partition_key=_string(JobsTable.UNSENT_INDEX_PARTITION_KEY),
            sort_key=_string(JobsTable.UNSENT_INDEX_SORT_KEY),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        # Sparse: only QUEUED jobs carry `queued_lane`; counting the keys before a job's
        # `created_at` gives its queue position, so keys are all the index needs.
        self.jobs.add_global_secondary_index(
            index_name=JobsTable.QUEUED_INDEX,
            partition_key=_string(JobsTable.QUEUED_INDEX_PARTITION_KEY),
            sort_key=_string(JobsTable.QUEUED_INDEX_SORT_KEY),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )

        # Entries are short-lived; losing them only re-opens a window for a duplicate request.
        self.idempotency = dynamodb.Table(
            self,
            "Idempotency",
            table_name=names.idempotency_table,
            partition_key=_string(IdempotencyTable.PARTITION_KEY),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=_PITR,
            time_to_live_attribute=IdempotencyTable.TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY,
        )


def _string(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)
