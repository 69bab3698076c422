"""The one local AWS for every test suite: a moto server (real HTTP, real boto3, no account).

`moto_endpoint` (session) starts local mode's own emulator (`runtime.local.emulator`) once;
`moto_env` (per test) points boto3 in this process, and children started with its environment,
at it with dummy credentials, and restores the environment afterwards. Resources come from
`provision_stage`, which is local mode's `provision` (`runtime.local.resources`): tests create
the very names and schemas the stack creates, with no second hand-kept list.

Registered for the whole tree by `pytest_plugins` in `tests/conftest.py`, so one server serves
every suite; each test isolates itself by stage name or by `reset_moto`.
"""

from __future__ import annotations

import dataclasses
import functools
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from infra.config import StageConfig, stage_config
from runtime.common.names import ResourceNames
from runtime.local.emulator import LOCAL_CREDENTIALS, moto_server
from runtime.local.emulator import local_session as emulator_session
from runtime.local.resources import LOCAL_ACCOUNT, LOCAL_REGION, LocalResources, provision

REGION = LOCAL_REGION
ACCOUNT = LOCAL_ACCOUNT


def aws_env(endpoint: str) -> dict[str, str]:
    """What boto3 (in this process and its children) needs to talk to the emulator."""
    return {
        **LOCAL_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
    }


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def moto_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 at the session's emulator for this test; host credentials never apply."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env(moto_endpoint).items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


def reset_moto(endpoint: str) -> None:
    """Drop every resource on the server (moto's reset API)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()


def provision_stage(
    endpoint: str,
    stage: str,
    *,
    config: StageConfig | None = None,
    max_receive_count: int | None = None,
    visibility_timeout_seconds: int | None = None,
) -> LocalResources:
    """Create one stage's resources as local mode does (from the `dev` stage's config unless
    given), optionally with the lanes' redrive count and the queues' visibility changed."""
    config = config or stage_config("dev")
    if max_receive_count is not None:
        config = dataclasses.replace(
            config,
            interactive=dataclasses.replace(
                config.interactive, max_receive_count=max_receive_count
            ),
            batch=dataclasses.replace(config.batch, max_receive_count=max_receive_count),
        )
    if visibility_timeout_seconds is not None:
        config = dataclasses.replace(config, visibility_timeout_seconds=visibility_timeout_seconds)
    names = ResourceNames(stage=stage, account=ACCOUNT, region=REGION)
    return provision(local_session(), names=names, config=config, endpoint_url=endpoint)


@functools.cache
def local_session() -> boto3.Session:
    """One session with the emulator's dummy credentials, whatever the host's environment says,
    for the whole test session: a new session parses the service models again (about 0.1 s per
    client), which per test would cost more than most tests. Create clients from it on the
    test's thread only (sessions are not thread-safe; the clients they make are)."""
    return emulator_session(REGION)


@functools.cache
def local_client(service: str, endpoint: str, region: str = REGION) -> Any:
    """One client per service and endpoint for the whole session (creating one parses the
    service model, which costs more than most test calls)."""
    return local_session().client(service, endpoint_url=endpoint, region_name=region)
