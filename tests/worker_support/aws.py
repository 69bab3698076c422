"""The worker's AWS world on a moto server: buckets, jobs table, lanes with DLQs, completion topic
(with an SQS subscriber to read events back), webhook secret; plus job submission as the API does.

The server runs in this process on a free port, so worker subprocesses reach it over HTTP too.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from runtime.common.jobs import (
    AvatarOptions,
    JobMessage,
    JobStatus,
    MediaRef,
    RenderOptions,
)
from runtime.common.keys import upload_key
from runtime.common.names import BucketRole, EnvVar, JobsTable, Lane, ResourceNames
from runtime.common.records import JobRecord
from runtime.worker.job_store import iso, utc_now

REGION = "us-east-1"
ACCOUNT = "123456789012"
MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """Start the emulator on a free port; the caller points boto3 at it with `aws_env`."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per AWS call
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def aws_env(endpoint: str) -> dict[str, str]:
    """What boto3 (in this process and its children) needs to talk to the emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }


@dataclass
class WorkerWorld:
    """One isolated deployment (its own stage name) on the shared emulator."""

    names: ResourceNames
    queue_urls: dict[Lane, str]
    dlq_urls: dict[Lane, str]
    events_queue_url: str
    topic_arn: str
    secret_arn: str
    webhook_secret: str
    max_receive_count: int

    @property
    def s3(self) -> Any:
        return boto3.client("s3")

    @property
    def sqs(self) -> Any:
        return boto3.client("sqs")

    @property
    def table(self) -> Any:
        return boto3.resource("dynamodb").Table(self.names.jobs_table)

    def bucket(self, role: BucketRole) -> str:
        return self.names.bucket(role)

    def env(self, models_dir: Path, **overrides: str) -> dict[str, str]:
        """The variables the stack would set on the worker container."""
        values = {
            EnvVar.STAGE: self.names.stage,
            EnvVar.UPLOADS_BUCKET: self.bucket(BucketRole.UPLOADS),
            EnvVar.OUTPUTS_BUCKET: self.bucket(BucketRole.OUTPUTS),
            EnvVar.AVATAR_CACHE_BUCKET: self.bucket(BucketRole.AVATAR_CACHE),
            EnvVar.JOBS_TABLE: self.names.jobs_table,
            EnvVar.LANES: "interactive,batch",
            EnvVar.INTERACTIVE_QUEUE_URL: self.queue_urls[Lane.INTERACTIVE],
            EnvVar.BATCH_QUEUE_URL: self.queue_urls[Lane.BATCH],
            EnvVar.COMPLETION_TOPIC_ARN: self.topic_arn,
            EnvVar.WEBHOOK_SECRET_ARN: self.secret_arn,
            EnvVar.MODELS_DIR: str(models_dir),
            EnvVar.HEARTBEAT_SECONDS: "1",
            EnvVar.VISIBILITY_TIMEOUT_SECONDS: "30",
            EnvVar.STOP_TIMEOUT_SECONDS: "30",
            EnvVar.MAX_RECEIVE_COUNT: str(self.max_receive_count),
            EnvVar.POLL_WAIT_SECONDS: "0",
            EnvVar.RETRY_BASE_SECONDS: "0",
            EnvVar.DEVICE: "cpu",
            EnvVar.DTYPE: "float32",
            EnvVar.ENGINE_FACTORY: "tests.support.small_engine:load",
            EnvVar.WEBHOOK_ALLOW_PRIVATE: "true",
        }
        return {str(name): value for name, value in {**values, **overrides}.items()}

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
        message = JobMessage(
            job_id=job_id,
            tenant=tenant,
            lane=lane,
            avatar_id=avatar_id,
            avatar=avatar,
            avatar_options=AvatarOptions(),
            audio=audio,
            options=RenderOptions(),
            correlation_id=f"corr-{job_id[:8]}",
            submitted_at=now,
            has_webhook=webhook_url is not None,
            deadline_at=deadline_at,
        )
        record = JobRecord(
            job_id=job_id,
            tenant=tenant,
            lane=lane,
            status=JobStatus.QUEUED,
            created_at=now,
            updated_at=now,
            correlation_id=message.correlation_id,
            avatar_id=avatar_id,
            avatar=avatar,
            audio=audio,
            webhook_url=webhook_url,
            deadline_at=deadline_at,
        )
        self.table.put_item(Item=record.to_item())
        for _ in range(copies):
            self.sqs.send_message(
                QueueUrl=self.queue_urls[lane], MessageBody=message.model_dump_json()
            )
        return message

    def record(self, job_id: str) -> JobRecord:
        item = self.table.get_item(
            Key={JobsTable.PARTITION_KEY: f"JOB#{job_id}"}, ConsistentRead=True
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


def create_world(max_receive_count: int = 2) -> WorkerWorld:
    names = ResourceNames(stage=f"t{uuid.uuid4().hex[:8]}", account=ACCOUNT, region=REGION)
    s3 = boto3.client("s3")
    for role in (
        BucketRole.UPLOADS,
        BucketRole.OUTPUTS,
        BucketRole.AVATAR_CACHE,
        BucketRole.WEIGHTS,
    ):
        s3.create_bucket(Bucket=names.bucket(role))
    boto3.client("dynamodb").create_table(
        TableName=names.jobs_table,
        KeySchema=[{"AttributeName": JobsTable.PARTITION_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": JobsTable.PARTITION_KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sqs = boto3.client("sqs")
    queue_urls, dlq_urls = {}, {}
    for lane in Lane:
        dlq_url = sqs.create_queue(QueueName=names.dead_letter_queue(lane))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        queue_urls[lane] = sqs.create_queue(
            QueueName=names.queue(lane),
            Attributes={
                "VisibilityTimeout": "30",
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
                ),
            },
        )["QueueUrl"]
        dlq_urls[lane] = dlq_url
    sns = boto3.client("sns")
    topic_arn = sns.create_topic(Name=names.completion_topic)["TopicArn"]
    events_url = sqs.create_queue(QueueName=f"{names.prefix}-events")["QueueUrl"]
    events_arn = sqs.get_queue_attributes(QueueUrl=events_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=events_arn)
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    secret_arn = boto3.client("secretsmanager").create_secret(
        Name=names.webhook_secret, SecretString=webhook_secret
    )["ARN"]
    return WorkerWorld(
        names=names,
        queue_urls=queue_urls,
        dlq_urls=dlq_urls,
        events_queue_url=events_url,
        topic_arn=topic_arn,
        secret_arn=secret_arn,
        webhook_secret=webhook_secret,
        max_receive_count=max_receive_count,
    )
