"""`python -m bench.chaos_worker`: the real worker (`runtime.worker`) with AWS faults injected.

The chaos harness starts workers through this launcher so production code carries no test
branches: before the worker starts, every botocore client created in the process gets a
`before-send` hook that answers a share of requests itself instead of sending them to the
emulator, the way a bad minute of S3, SQS or DynamoDB looks to a client:

- `CHAOS_FAULT_RATE` (0..1): share of requests answered with a fault: DynamoDB
  `ProvisionedThroughputExceededException` (HTTP 400, throttling), S3 `SlowDown` (503), any other
  service HTTP 500. botocore's retry policy (the worker's `standard` mode) sees them exactly as
  real faults, so this measures retries with backoff end to end.
- `CHAOS_SLOW_PUT_SECONDS`: every S3 PutObject is delayed this long first, so a signal can land
  while the worker uploads its output.

Each injected fault is one line on stderr (`chaos-fault <service>.<operation> <status>`), so the
harness can count them from the worker's log.
"""

from __future__ import annotations

import json
import os
import random
import runpy
import sys
import time
from collections.abc import Iterator
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse

ENV_FAULT_RATE = "CHAOS_FAULT_RATE"
ENV_SLOW_PUT_SECONDS = "CHAOS_SLOW_PUT_SECONDS"
FAULT_MARK = "chaos-fault"


class _Body:
    """The raw stream AWSResponse reads its content from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _fault(service: str, url: str) -> AWSResponse:
    if service == "dynamodb":
        body = json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "injected throttling",
            }
        ).encode()
        return AWSResponse(url, 400, {"x-amzn-requestid": "chaos"}, _Body(body))
    if service == "s3":
        body = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
        return AWSResponse(url, 503, {"x-amz-request-id": "chaos"}, _Body(body))
    return AWSResponse(url, 500, {"x-amzn-requestid": "chaos"}, _Body(b""))


def install(rate: float, slow_put_seconds: float, *, seed: int | None = None) -> None:
    """Hook every botocore client this process creates from now on."""
    chance = random.Random(seed)
    create_client = botocore.session.Session.create_client

    def hooked(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = create_client(self, *args, **kwargs)
        service = client.meta.service_model.endpoint_prefix

        def before_send(request: Any, event_name: str = "", **_: Any) -> AWSResponse | None:
            operation = event_name.rsplit(".", 1)[-1]
            if service == "s3" and operation == "PutObject" and slow_put_seconds > 0:
                time.sleep(slow_put_seconds)
            if chance.random() < rate:
                response = _fault(service, request.url)
                print(
                    f"{FAULT_MARK} {service}.{operation} {response.status_code}",
                    file=sys.stderr,
                    flush=True,
                )
                return response
            return None

        client.meta.events.register("before-send", before_send)
        return client

    botocore.session.Session.create_client = hooked


def main() -> None:
    install(
        float(os.environ.get(ENV_FAULT_RATE, "0")),
        float(os.environ.get(ENV_SLOW_PUT_SECONDS, "0")),
    )
    runpy.run_module("runtime.worker", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
