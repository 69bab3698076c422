"""The worker's AWS world on the shared moto server: the stack's resources (as local mode
provisions them), plus an SQS subscriber on the completion topic to read events back, the webhook
secret as provisioned, and job submission as the API does it.

The server listens on localhost over HTTP, so worker subprocesses reach it too.
"""

from __future__ import annotations

import functools
import json
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from runtime.api.jobs import message_for
from runtime.common.jobs import (
    JobMessage,
    JobStatus,
    MediaRef,
)
from runtime.common.keys import upload_key
from runtime.common.names import BucketRole, EnvVar, JobsTable, Lane, ResourceNames
from runtime.common.records import JobRecord, job_pk
from runtime.local.resources import LocalResources
from runtime.worker.job_store import iso, utc_now
from tests.support.moto_server import provision_stage

MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class WorkerWorld:
    """One isolated deployment (its own stage name) on the shared emulator."""

    resources: LocalResources
    events_queue_url: str
    webhook_secret: str

    @property
    def names(self) -> ResourceNames:
        return self.resources.names

    @property
    def queue_urls(self) -> dict[Lane, str]:
        return self.resources.queue_urls

    @property
    def dlq_urls(self) -> dict[Lane, str]:
        return self.resources.dead_letter_queue_urls

    # One client each per world (made on first use, from boto3's default session): a test reads
    # records and objects many times, and a client per read adds up across the suite.
    @functools.cached_property
    def s3(self) -> Any:
        return boto3.client("s3")

    @functools.cached_property
    def sqs(self) -> Any:
        return boto3.client("sqs")

    @functools.cached_property
    def _dynamodb(self) -> Any:
        return boto3.resource("dynamodb")

    @property
    def table(self) -> Any:
        return self._dynamodb.Table(self.names.jobs_table)

    def bucket(self, role: BucketRole) -> str:
        return self.resources.buckets[role]

    def env(self, models_dir: Path, **overrides: str) -> dict[str, str]:
        """The variables the stack sets on the worker container, with test-speed knobs; no
        weights bucket (the worker uses `models_dir` as it is, as in local mode)."""
        values: dict[str, str] = {
            str(name): value
            for name, value in self.resources.runtime_env().items()
            if name is not EnvVar.WEIGHTS_BUCKET
        }
        knobs = {
            EnvVar.LANES: "interactive,batch",
            EnvVar.MODELS_DIR: str(models_dir),
            EnvVar.HEARTBEAT_SECONDS: "1",
            EnvVar.VISIBILITY_TIMEOUT_SECONDS: "30",
            EnvVar.STOP_TIMEOUT_SECONDS: "30",
            EnvVar.MAX_RECEIVE_COUNT: str(MAX_RECEIVE_COUNT),
            EnvVar.POLL_WAIT_SECONDS: "0",
            EnvVar.RETRY_BASE_SECONDS: "0",
            EnvVar.DEVICE: "cpu",
            EnvVar.DTYPE: "float32",
            EnvVar.ENGINE_FACTORY: "tests.support.small_engine:load",
            EnvVar.WEBHOOK_ALLOW_PRIVATE: "true",
        }
        values.update({str(name): value for name, value in knobs.items()})
        return {**values, **{str(name): value for name, value in overrides.items()}}

    def upload(self, tenant: str, source: Path | bytes, kind: str) -> MediaRef:
        key = upload_key(tenant, uuid.uuid4().hex[:12], kind)
        body = source.read_bytes() if isinstance(source, Path) else source
        self.s3.put_object(Bucket=self.bucket(BucketRole.UPLOADS), Key=key, Body=body)
        return MediaRef(bucket=self.bucket(BucketRole.UPLOADS), key=key)

    def submit(
        self,
        *,
        tenant: str = "tenant-a",
        lane: Lane = Lane.INTERACTIVE,
        avatar: MediaRef | None = None,
        audio: MediaRef | None = None,
        avatar_id: str = "avatar-yongen",
        webhook_url: str | None = None,
        copies: int = 1,
        deadline_at: str | None = None,
    ) -> JobMessage:
        """Write the job record, then send its message `copies` times (as the API would)."""
        job_id = uuid.uuid4().hex
        now = iso(utc_now())
        avatar = avatar or self.upload(tenant, MEDIA / "yongen.mp4", "avatar")
        audio = audio or self.upload(tenant, MEDIA / "yongen.wav", "audio")
        record = JobRecord(
            job_id=job_id,
            tenant=tenant,
            lane=lane,
            status=JobStatus.QUEUED,
            created_at=now,
            updated_at=now,
            correlation_id=f"corr-{job_id[:8]}",
            avatar_id=avatar_id,
            avatar=avatar,
            audio=audio,
            webhook_url=webhook_url,
            deadline_at=deadline_at,
        )
        message = message_for(record)
        self.table.put_item(Item=record.to_item())
        for _ in range(copies):
            self.sqs.send_message(
                QueueUrl=self.queue_urls[lane], MessageBody=message.model_dump_json()
            )
        return message

    def record(self, job_id: str) -> JobRecord:
        item = self.table.get_item(
            Key={JobsTable.PARTITION_KEY: job_pk(job_id)}, ConsistentRead=True
        )["Item"]
        return JobRecord.from_item(item)

    def events(self) -> list[dict[str, Any]]:
        """SNS envelopes delivered to the subscriber queue so far (consumed)."""
        found = []
        while True:
            response = self.sqs.receive_message(
                QueueUrl=self.events_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = response.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.events_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def messages_in(self, queue_url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


MAX_RECEIVE_COUNT = 2  # deliveries before the lanes dead-letter (the dev stage has 3)


def create_world(endpoint: str) -> WorkerWorld:
    """One isolated deployment (its own stage name) on the emulator at `endpoint`, which boto3
    in this process already points at (`moto_env`)."""
    resources = provision_stage(
        endpoint,
        f"t{uuid.uuid4().hex[:8]}",
        max_receive_count=MAX_RECEIVE_COUNT,
        visibility_timeout_seconds=30,
    )
    sqs = boto3.client("sqs")
    events_url = sqs.create_queue(QueueName=f"{resources.names.prefix}-events")["QueueUrl"]
    events_arn = sqs.get_queue_attributes(QueueUrl=events_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    boto3.client("sns").subscribe(
        TopicArn=resources.completion_topic_arn, Protocol="sqs", Endpoint=events_arn
    )
    webhook_secret = boto3.client("secretsmanager").get_secret_value(
        SecretId=resources.webhook_secret_arn
    )["SecretString"]
    return WorkerWorld(
        resources=resources, events_queue_url=events_url, webhook_secret=webhook_secret
    )
