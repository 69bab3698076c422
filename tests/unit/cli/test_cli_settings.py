"""Endpoint resolution from a deployed stack's CloudFormation outputs (on the emulator)."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from runtime.cli.errors import CliError, ExitCode
from runtime.cli.settings import resolve_endpoint, resolve_weights_bucket


def _deploy_stack_with_outputs(outputs: dict[str, str]) -> str:
    name = f"MuseTalk-test-{uuid.uuid4().hex[:8]}"
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    return name


def test_stack_outputs_give_the_url_and_the_key_value(emulator_env: str) -> None:
    # Given a deployed stack whose outputs name the API URL and one tenant's API key id, with
    # the logical ids CDK gives outputs inside a construct (path + 8-hex hash)
    key = boto3.client("apigateway").create_api_key(name="tenant-a", enabled=True)
    stack = _deploy_stack_with_outputs(
        {
            "JobApiApiUrl5A9C2B1E": "https://abc.execute-api.us-east-1.amazonaws.com/prod/",
            "JobApiApiKeyIddemoC3D4E5F6": key["id"],
            "WeightsBucket": "weights-bucket",
        }
    )

    # When the CLI resolves its endpoint from the stack name alone
    endpoint = resolve_endpoint(api_url=None, api_key=None, stack=stack, region=None)

    # Then it has the URL and the key's value (not its id)
    assert endpoint.api_url == "https://abc.execute-api.us-east-1.amazonaws.com/prod/"
    assert endpoint.api_key == key["value"]
    assert resolve_weights_bucket(bucket=None, stack=stack, region=None) == "weights-bucket"


def test_flags_win_over_the_stack(emulator_env: str) -> None:
    endpoint = resolve_endpoint(api_url="http://x", api_key="k", stack="never-read", region=None)
    assert (endpoint.api_url, endpoint.api_key) == ("http://x", "k")


def test_an_unknown_stack_is_a_usage_error_naming_the_stack(emulator_env: str) -> None:
    with pytest.raises(CliError) as raised:
        resolve_endpoint(api_url=None, api_key=None, stack="MuseTalk-nope", region=None)
    assert raised.value.exit_code == ExitCode.USAGE
    assert raised.value.field == "stack"


def test_a_stack_without_the_output_says_which_is_missing(emulator_env: str) -> None:
    stack = _deploy_stack_with_outputs({"Other": "x"})
    with pytest.raises(CliError, match=r"no output named \*ApiUrl"):
        resolve_endpoint(api_url=None, api_key=None, stack=stack, region=None)


def test_with_several_tenants_the_tenant_picks_the_key(emulator_env: str) -> None:
    apigateway = boto3.client("apigateway")
    acme = apigateway.create_api_key(name="acme", enabled=True)
    other = apigateway.create_api_key(name="other", enabled=True)
    stack = _deploy_stack_with_outputs(
        {
            "JobApiApiUrl5A9C2B1E": "https://abc.example/prod/",
            "JobApiApiKeyIdacmecorp0A1B2C3D": acme["id"],
            "JobApiApiKeyIdother4E5F6A7B": other["id"],
        }
    )

    with pytest.raises(CliError, match="--tenant") as ambiguous:
        resolve_endpoint(api_url=None, api_key=None, stack=stack, region=None)
    assert ambiguous.value.field == "tenant"
    chosen = resolve_endpoint(
        api_url=None, api_key=None, stack=stack, region=None, tenant="acme-corp"
    )
    assert chosen.api_key == acme["value"]
