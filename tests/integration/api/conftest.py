"""Each API integration test gets a fresh deployment on the session's moto server."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from runtime.api import handler
from runtime.common.names import ResourceNames
from tests.support.api_events import FakeLambdaContext, rest_event
from tests.support.aws_resources import Resources, create_resources
from tests.support.moto_server import ACCOUNT, REGION, reset_moto

pytest_plugins = ["tests.support.moto_server"]

TENANTS = {"key-a": "tenant-a", "key-b": "tenant-b"}


@pytest.fixture
def deployment(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Resources]:
    reset_moto(moto_endpoint)
    names = ResourceNames(stage="test", account=ACCOUNT, region=REGION)
    resources = create_resources(names, moto_endpoint, api_key_tenants=TENANTS)
    for name, value in resources.env().items():
        monkeypatch.setenv(name, value)
    handler.runtime.cache_clear()
    yield resources
    handler.runtime.cache_clear()


Call = Callable[..., dict[str, Any]]


@pytest.fixture
def call_api(deployment: Resources) -> Call:
    """Invoke the API Lambda with a REST proxy event; returns the response with `json` parsed."""

    def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = handler.lambda_handler(rest_event(method, path, **kwargs), FakeLambdaContext())
        body = response.get("body")
        response["json"] = json.loads(body) if body else None
        return response

    return call


@pytest.fixture
def aws(deployment: Resources) -> Callable[[str], Any]:
    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=deployment.endpoint, region_name=REGION)

    return client
