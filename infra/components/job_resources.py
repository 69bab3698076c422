"""The resources both sides of a job touch, handed from the stack to the API and the workers.

One bundle, so the stack names them once; each side's own resources extend it (the API adds its
dead-letter queues and idempotency table, the workers the weights bucket).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

from runtime.common.names import Lane


@dataclass(frozen=True, kw_only=True)
class JobResources:
    queues: dict[Lane, sqs.IQueue]
    jobs_table: dynamodb.ITable
    uploads: s3.IBucket
    outputs: s3.IBucket
    avatar_cache: s3.IBucket
    completion_topic: sns.ITopic
    webhook_secret: secretsmanager.ISecret
    webhook_queue: sqs.IQueue  # webhook deliveries the worker could not make go on from here

    def shared(self) -> dict[str, Any]:
        """These fields as keyword arguments, to build a side's own resources from them."""
        return {field.name: getattr(self, field.name) for field in fields(JobResources)}
