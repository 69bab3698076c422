"""Where the API is and which key to use: flags, then environment, then the stack's outputs.

A deployed stack publishes its endpoint, one API key id per tenant and the weights bucket as
CloudFormation outputs; `--stack NAME` (or `MUSETALK_STACK`) reads them, and the key's value, with
the caller's AWS credentials, so users never paste keys into shell history.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from runtime.cli.errors import CliError, ExitCode

ENV_API_URL = "MUSETALK_API_URL"
ENV_API_KEY = "MUSETALK_API_KEY"
ENV_STACK = "MUSETALK_STACK"
ENV_TENANT = "MUSETALK_TENANT"
ENV_WEIGHTS_BUCKET = "MUSETALK_WEIGHTS_BUCKET"

# CloudFormation outputs the stack publishes (matched by name, ignoring CDK's path and hash).
OUTPUT_API_URL = "ApiUrl"
OUTPUT_API_KEY_ID = "ApiKeyId"  # followed by the tenant: `ApiKeyId-<tenant>` in the CDK app
OUTPUT_WEIGHTS_BUCKET = "WeightsBucket"
_CDK_HASH = re.compile(r"[0-9A-F]{8}$")


@dataclass(frozen=True)
class Endpoint:
    api_url: str
    api_key: str | None


def resolve_endpoint(
    *,
    api_url: str | None,
    api_key: str | None,
    stack: str | None,
    region: str | None,
    tenant: str | None = None,
) -> Endpoint:
    url = api_url or os.environ.get(ENV_API_URL)
    key = api_key or os.environ.get(ENV_API_KEY)
    stack = stack or os.environ.get(ENV_STACK)
    if url and key:
        return Endpoint(api_url=url, api_key=key)
    if stack:
        outputs = stack_outputs(stack, region)
        url = url or _output(outputs, OUTPUT_API_URL, stack)
        tenant = tenant or os.environ.get(ENV_TENANT)
        key = key or _api_key_value(_api_key_id(outputs, stack, tenant), region)
        return Endpoint(api_url=url, api_key=key)
    if url:
        return Endpoint(api_url=url, api_key=None)
    raise CliError(
        ExitCode.USAGE,
        f"no API endpoint: pass --api-url and --api-key, set {ENV_API_URL} and {ENV_API_KEY}, "
        f"or name the deployed stack with --stack / {ENV_STACK}",
        field="api_url",
    )


def resolve_weights_bucket(*, bucket: str | None, stack: str | None, region: str | None) -> str:
    bucket = bucket or os.environ.get(ENV_WEIGHTS_BUCKET)
    if bucket:
        return bucket
    stack = stack or os.environ.get(ENV_STACK)
    if stack:
        return _output(stack_outputs(stack, region), OUTPUT_WEIGHTS_BUCKET, stack)
    raise CliError(
        ExitCode.USAGE,
        f"no weights bucket: pass --bucket, set {ENV_WEIGHTS_BUCKET}, or name the stack with "
        f"--stack / {ENV_STACK}",
        field="bucket",
    )


def stack_outputs(stack: str, region: str | None) -> dict[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = _boto_client("cloudformation", region).describe_stacks(StackName=stack)
    except (BotoCoreError, ClientError) as error:
        raise CliError(
            ExitCode.USAGE, f"cannot read stack {stack!r}: {error}", field="stack"
        ) from None
    outputs = answer["Stacks"][0].get("Outputs", [])
    return {str(o["OutputKey"]): str(o["OutputValue"]) for o in outputs}


def _output(outputs: dict[str, str], name: str, stack: str) -> str:
    """An output by name; CDK names outputs inside constructs `<path><name><8-hex hash>`."""
    for key, value in outputs.items():
        if _CDK_HASH.sub("", key).endswith(name):
            return value
    raise CliError(ExitCode.USAGE, f"stack {stack!r} has no output named *{name}", field="stack")


def _api_key_id(outputs: dict[str, str], stack: str, tenant: str | None) -> str:
    """The key id output of `tenant`, or of the only tenant when the stack has one."""
    by_tenant = {}
    for key, value in outputs.items():
        match = re.search(OUTPUT_API_KEY_ID + r"(\w*)$", _CDK_HASH.sub("", key))
        if match:
            by_tenant[match.group(1)] = value
    if tenant is not None:
        wanted = re.sub(r"[^A-Za-z0-9]", "", tenant)  # CDK drops other characters from ids
        if wanted in by_tenant:
            return by_tenant[wanted]
        raise CliError(
            ExitCode.USAGE,
            f"stack {stack!r} has no API key for tenant {tenant!r} "
            f"(it has: {', '.join(sorted(by_tenant)) or 'none'})",
            field="tenant",
        )
    if len(by_tenant) == 1:
        return next(iter(by_tenant.values()))
    if not by_tenant:
        raise CliError(
            ExitCode.USAGE,
            f"stack {stack!r} has no output named *{OUTPUT_API_KEY_ID}*",
            field="stack",
        )
    raise CliError(
        ExitCode.USAGE,
        f"stack {stack!r} has API keys for tenants {', '.join(sorted(by_tenant))}: "
        f"choose one with --tenant or {ENV_TENANT}",
        field="tenant",
    )


def _api_key_value(key_id: str, region: str | None) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = _boto_client("apigateway", region).get_api_key(apiKey=key_id, includeValue=True)
    except (BotoCoreError, ClientError) as error:
        raise CliError(
            ExitCode.AUTH, f"cannot read the value of API key {key_id}: {error}", field="api_key"
        ) from None
    return str(answer["value"])


def _boto_client(service: str, region: str | None) -> Any:
    import boto3

    return boto3.client(service, region_name=region)
