"""The public Powertools for AWS Lambda (Python) V3 layer, pinned to exactly the version
`runtime/api/requirements.txt` pins (the one the tests ran), so a deploy never picks up another
Powertools or pydantic than the code was tested with. The layer's ARN is read at deploy time from
its public per-version SSM parameter: no lookup at synth, no credentials."""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parents[2]


def powertools_version(requirements: Path) -> str:
    """The aws-lambda-powertools version pinned in the API's requirements (tests run it)."""
    found = re.search(
        r"^aws-lambda-powertools(?:\[[^\]]*\])?==([0-9][0-9.]*)$",
        requirements.read_text(),
        flags=re.MULTILINE,
    )
    if found is None:
        raise ValueError(f"{requirements} must pin aws-lambda-powertools==<version>")
    return found.group(1)


POWERTOOLS_VERSION = powertools_version(REPO_ROOT / "runtime" / "api" / "requirements.txt")
POWERTOOLS_LAYER_PARAMETER = f"/aws/service/powertools/python/arm64/python3.13/{POWERTOOLS_VERSION}"


def powertools_layer(scope: Construct, construct_id: str) -> lambda_.ILayerVersion:
    return lambda_.LayerVersion.from_layer_version_arn(
        scope,
        construct_id,
        ssm.StringParameter.value_for_string_parameter(scope, POWERTOOLS_LAYER_PARAMETER),
    )
