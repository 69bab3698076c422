"""Fixtures shared by the worker's unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

WEIGHTS_BUCKET = "weights"


@pytest.fixture
def s3() -> Iterator[Any]:
    """An in-process S3 (moto) with an empty weights bucket."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=WEIGHTS_BUCKET)
        yield client
