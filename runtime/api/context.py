"""What every API function needs: settings, AWS clients and a clock, built once per container.

Boto3 reads `AWS_ENDPOINT_URL` itself, so the same code talks to AWS or to the local emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from runtime.api.job_table import JobTable
from runtime.api.settings import Settings

_RETRIES = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=5
)
# SigV4 for presigned URLs: the only signature S3 accepts in newer regions and with KMS keys.
_S3 = _RETRIES.merge(Config(signature_version="s3v4"))


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC, so string order is time order (the tenant index sort key)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, kw_only=True)
class ApiContext:
    settings: Settings
    s3: Any
    sqs: Any
    sns: Any
    table: JobTable
    clock: Callable[[], datetime] = field(default=utc_now)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiContext:
        # The default session caches service models: a second context (tests, a second Lambda
        # handler in the same process) costs no re-parsing.
        return cls(
            settings=settings,
            s3=boto3.client("s3", config=_S3),
            sqs=boto3.client("sqs", config=_RETRIES),
            sns=boto3.client("sns", config=_RETRIES),
            table=JobTable(boto3.resource("dynamodb", config=_RETRIES).Table(settings.jobs_table)),
        )

    def now(self) -> datetime:
        return self.clock()
