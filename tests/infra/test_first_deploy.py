"""What a first `cdk deploy` into a fresh account needs, and what AWS checks at run time that
cdk-nag and cfn-lint cannot see: the account's API Gateway logging role, the host role's right to
drain on a spot notice, a pinned Powertools layer, deploys that keep autoscaled counts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from infra.components.powertools_layer import POWERTOOLS_LAYER_PARAMETER, powertools_version
from infra.config import stage_config, with_alarm_emails
from infra.stacks.musetalk_stack import (
    MAX_STOP_TIMEOUT_SECONDS,
    SPOT_NOTICE_SECONDS,
    validate_config,
)
from tests.infra.conftest import REPO_ROOT, Synthesized
from tests.infra.template_queries import actions, logical_id, one, resources, statements_of_role


def test_the_stage_with_access_logs_sets_the_account_cloudwatch_role(
    synthesized: Synthesized,
) -> None:
    # API Gateway writes access logs with the account-wide role; a stage with access logging in
    # an account that never set one fails to create.
    _, stage = one(synthesized.raw, "AWS::ApiGateway::Stage", "ApiRestApiDeploymentStage")
    assert "AccessLogSetting" in stage["Properties"]
    account_id, account = one(synthesized.raw, "AWS::ApiGateway::Account", "ApiRestApiAccount")
    role = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    policies = json.dumps(synthesized.raw["Resources"][role]["Properties"]["ManagedPolicyArns"])
    assert "AmazonAPIGatewayPushToCloudWatchLogs" in policies
    # And the stage waits for the account setting
    assert account_id in stage.get("DependsOn", [])


def test_spot_hosts_may_drain_themselves_within_their_cluster(synthesized: Synthesized) -> None:
    for name in ("Spot", "OnDemand"):
        found = [
            k for k in resources(synthesized.raw, "AWS::IAM::Role") if f"GpuCapacity{name}Host" in k
        ]
        if not found:
            continue  # dev has no on-demand provider
        (role,) = found
        drains = [
            s
            for s in statements_of_role(synthesized.raw, role)
            if "ecs:UpdateContainerInstancesState" in actions(s)
        ]
        assert drains, f"{name} host role cannot set its instance to DRAINING"
        cluster = logical_id(synthesized.raw, "AWS::ECS::Cluster", "GpuCapacityCluster")
        assert cluster in json.dumps(drains[0]["Condition"])


def test_the_stop_timeout_leaves_the_notice_room_to_reach_the_task(
    synthesized: Synthesized,
) -> None:
    timeout = synthesized.config.task_stop_timeout_seconds
    assert timeout <= MAX_STOP_TIMEOUT_SECONDS <= SPOT_NOTICE_SECONDS - 30
    for lane in ("Interactive", "Batch"):
        _, task = one(synthesized.raw, "AWS::ECS::TaskDefinition", f"{lane}WorkerTask")
        (container,) = task["Properties"]["ContainerDefinitions"]
        assert container["StopTimeout"] == timeout


def test_the_powertools_layer_is_the_version_the_api_is_tested_with(
    synthesized: Synthesized,
) -> None:
    version = powertools_version(REPO_ROOT / "runtime" / "api" / "requirements.txt")
    assert POWERTOOLS_LAYER_PARAMETER.endswith(f"/{version}")
    defaults = [p.get("Default", "") for p in synthesized.raw["Parameters"].values()]
    assert POWERTOOLS_LAYER_PARAMETER in defaults
    assert not any(d.startswith("/aws/service/powertools/") and "latest" in d for d in defaults)


def test_an_unpinned_powertools_requirement_is_refused(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("aws-lambda-powertools[tracer]>=3\n")
    with pytest.raises(ValueError, match="must pin aws-lambda-powertools"):
        powertools_version(requirements)


def test_deploys_keep_the_autoscaled_task_counts(synthesized: Synthesized) -> None:
    # CloudFormation sends DesiredCount on every service update when the template has one.
    for service in resources(synthesized.raw, "AWS::ECS::Service").values():
        assert "DesiredCount" not in service["Properties"]


def test_all_tenants_together_get_more_than_one_tenant(synthesized: Synthesized) -> None:
    _, stage = one(synthesized.raw, "AWS::ApiGateway::Stage", "ApiRestApiDeploymentStage")
    (settings,) = stage["Properties"]["MethodSettings"]
    _, plan = one(synthesized.raw, "AWS::ApiGateway::UsagePlan", "ApiRestApiUsagePlan")
    per_key = plan["Properties"]["Throttle"]["RateLimit"]
    assert settings["ThrottlingRateLimit"] == synthesized.config.api_stage_throttle_rate
    assert settings["ThrottlingRateLimit"] > per_key


def test_the_api_role_cannot_scan_or_batch_write(synthesized: Synthesized) -> None:
    role = next(
        k
        for k in resources(synthesized.raw, "AWS::IAM::Role")
        if k.startswith("ApiHandlerServiceRole")
    )
    granted = {a for s in statements_of_role(synthesized.raw, role) for a in actions(s)}
    assert not granted & {"dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"}
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"} <= granted


def test_only_interface_endpoints_something_on_a_host_calls(prod: Synthesized) -> None:
    services = json.dumps(
        [
            e["Properties"]["ServiceName"]
            for e in resources(prod.raw, "AWS::EC2::VPCEndpoint").values()
        ]
    )
    for unused in (".monitoring", ".sts", '.ssm"'):
        assert unused not in services


def test_alarm_recipients_can_be_given_at_deploy_time() -> None:
    config = with_alarm_emails(stage_config("prod"), "ops@example.com, oncall@example.org")
    assert config.alarm_emails == ("ops@example.com", "oncall@example.org")
    assert with_alarm_emails(stage_config("dev"), None) == stage_config("dev")
    with pytest.raises(ValueError, match="alarm_emails: not an email address"):
        with_alarm_emails(stage_config("dev"), "ops@example.com,nobody")


_NAME_PROPERTIES = (
    "BucketName",
    "TableName",
    "QueueName",
    "TopicName",
    "Name",
    "LogGroupName",
    "FunctionName",
    "RoleName",
    "DashboardName",
    "AlarmName",
    "ClusterName",
)


def test_a_rolled_back_first_deploy_leaves_no_fixed_name_behind(synthesized: Synthesized) -> None:
    # A resource kept after a failed create with a fixed name makes the next create fail with
    # "already exists"; RetainExceptOnCreate deletes it when its own create rolls back.
    for logical, resource in synthesized.raw["Resources"].items():
        named = [p for p in _NAME_PROPERTIES if p in resource.get("Properties", {})]
        if named:
            assert resource.get("DeletionPolicy", "Delete") in (
                "Delete",
                "RetainExceptOnCreate",
            ), f"{logical} ({named[0]}) is retained when its create rolls back"


def test_configs_that_break_the_notice_or_the_throttle_are_refused() -> None:
    prod = stage_config("prod")
    with pytest.raises(ValueError, match="task_stop_timeout_seconds"):
        validate_config(replace(prod, task_stop_timeout_seconds=SPOT_NOTICE_SECONDS))
    with pytest.raises(ValueError, match="api_stage_throttle_rate"):
        validate_config(replace(prod, api_stage_throttle_rate=prod.api_throttle_rate / 2))
