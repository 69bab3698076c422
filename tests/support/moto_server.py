"""A moto server for the whole test session: real HTTP, real boto3, no AWS account.

Use the `moto_endpoint` fixture (session scope) in any suite: it starts `ThreadedMotoServer` on a
free localhost port, points every boto3 client of this process at it (`AWS_ENDPOINT_URL`) with
dummy credentials and region, and stops it at the end. `reset_moto(endpoint)` empties it between
tests; `tests/support/aws_resources.py` creates the deployment's resources on it.

Make it visible by importing it into a conftest (`from tests.support.moto_server import
moto_endpoint`) or with `pytest_plugins = ["tests.support.moto_server"]` in the top-level
`tests/conftest.py` (pytest refuses `pytest_plugins` in nested conftests). Being session-scoped,
one server serves every suite that uses it.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account id

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret (dummy)
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def reset_moto(endpoint: str) -> None:
    """Drop every resource on the server (moto's reset API)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {name: os.environ.get(name) for name in [*_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(_ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield endpoint
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
