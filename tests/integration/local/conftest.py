"""Fixtures of the local-mode tests: one moto server (real HTTP) and a session on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from runtime.local.emulator import LOCAL_CREDENTIALS, moto_server
from runtime.local.resources import LOCAL_REGION


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def session() -> Any:
    return boto3.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=LOCAL_REGION,
    )
