"""GPU capacity: VPC with gateway endpoints, ECS cluster with Container Insights, spot GPU Auto
Scaling group (mixed instances, capacity-optimized) on the ECS GPU AMI, managed scaling and
termination protection, spot draining really on."""

from __future__ import annotations

import json

from tests.infra.conftest import Synthesized
from tests.infra.template_queries import one, resources


def _user_data(launch_template: dict) -> str:
    return json.dumps(launch_template["Properties"]["LaunchTemplateData"]["UserData"])


def test_spot_group_is_mixed_instances_price_capacity_optimized(synthesized: Synthesized) -> None:
    config = synthesized.config
    _, group = one(synthesized.raw, "AWS::AutoScaling::AutoScalingGroup", "GpuCapacitySpotGroup")
    props = group["Properties"]
    policy = props["MixedInstancesPolicy"]
    distribution = policy["InstancesDistribution"]
    # Then it is all spot, capacity-optimized over every configured GPU type
    assert distribution["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 0
    assert distribution["OnDemandBaseCapacity"] == 0
    overrides = [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]]
    assert overrides == list(config.gpu_instance_types)
    assert len(overrides) >= 3
    # And it can scale to zero and up to the stage's maximum
    assert props["MinSize"] == "0"
    assert props["MaxSize"] == str(config.max_instances)
    # And new instances are protected (managed termination protection requires it)
    assert props["NewInstancesProtectedFromScaleIn"] is True


def test_spot_draining_and_stop_timeout_are_in_the_user_data(synthesized: Synthesized) -> None:
    for lt_id, launch_template in resources(synthesized.raw, "AWS::EC2::LaunchTemplate").items():
        user_data = _user_data(launch_template)
        assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in user_data, lt_id
        timeout = synthesized.config.task_stop_timeout_seconds
        assert f"ECS_CONTAINER_STOP_TIMEOUT={timeout}s" in user_data, lt_id
        assert "ECS_CLUSTER=" in user_data, lt_id


def test_hosts_boot_the_ecs_gpu_ami_with_imdsv2_and_encrypted_disks(
    synthesized: Synthesized,
) -> None:
    parameters = synthesized.raw["Parameters"]
    for launch_template in resources(synthesized.raw, "AWS::EC2::LaunchTemplate").values():
        data = launch_template["Properties"]["LaunchTemplateData"]
        # AMI resolved at deploy time from the public SSM parameter (no lookups at synth)
        ami_parameter = parameters[data["ImageId"]["Ref"]]
        assert "/ecs/optimized-ami/" in ami_parameter["Default"]
        assert "/gpu/" in ami_parameter["Default"]
        assert data["MetadataOptions"] == {"HttpTokens": "required", "HttpPutResponseHopLimit": 1}
        devices = data["BlockDeviceMappings"]
        assert devices
        assert all(d["Ebs"]["Encrypted"] is True for d in devices)


def test_capacity_providers_use_managed_scaling_and_termination_protection(
    synthesized: Synthesized,
) -> None:
    providers = resources(synthesized.raw, "AWS::ECS::CapacityProvider").values()
    assert providers
    for provider in providers:
        asg = provider["Properties"]["AutoScalingGroupProvider"]
        assert asg["ManagedScaling"]["Status"] == "ENABLED"
        assert asg["ManagedTerminationProtection"] == "ENABLED"


def test_cluster_has_container_insights(synthesized: Synthesized) -> None:
    _, cluster = one(synthesized.raw, "AWS::ECS::Cluster", "GpuCapacityCluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["Properties"][
        "ClusterSettings"
    ]


def test_on_demand_fallback_exists_only_where_the_stage_asks(
    dev: Synthesized, prod: Synthesized
) -> None:
    assert not dev.config.on_demand_fallback_for_interactive
    assert prod.config.on_demand_fallback_for_interactive
    dev.template.resource_count_is("AWS::ECS::CapacityProvider", 1)
    prod.template.resource_count_is("AWS::ECS::CapacityProvider", 2)
    _, group = one(prod.raw, "AWS::AutoScaling::AutoScalingGroup", "GpuCapacityOnDemandGroup")
    distribution = group["Properties"]["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 100


def test_vpc_spans_two_azs_with_gateway_endpoints(synthesized: Synthesized) -> None:
    subnets = resources(synthesized.raw, "AWS::EC2::Subnet").values()
    azs = {json.dumps(s["Properties"]["AvailabilityZone"]) for s in subnets}
    assert len(azs) == 2
    endpoints = resources(synthesized.raw, "AWS::EC2::VPCEndpoint").values()
    gateway_services = {
        json.dumps(e["Properties"]["ServiceName"])
        for e in endpoints
        if e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"
    }
    assert any(".s3" in s for s in gateway_services)
    assert any(".dynamodb" in s for s in gateway_services)
    synthesized.template.resource_count_is("AWS::EC2::NatGateway", synthesized.config.nat_gateways)
    synthesized.template.resource_count_is("AWS::EC2::FlowLog", 1)


def test_interface_endpoints_follow_the_stage_and_admit_only_gpu_hosts(
    dev: Synthesized, prod: Synthesized
) -> None:
    def interface_endpoints(s: Synthesized) -> list[dict]:
        return [
            e
            for e in resources(s.raw, "AWS::EC2::VPCEndpoint").values()
            if e["Properties"].get("VpcEndpointType") == "Interface"
        ]

    assert interface_endpoints(dev) == []
    endpoints = interface_endpoints(prod)
    assert any("ecr.dkr" in json.dumps(e["Properties"]["ServiceName"]) for e in endpoints)
    assert any(".sqs" in json.dumps(e["Properties"]["ServiceName"]) for e in endpoints)
    # The endpoints' security group admits HTTPS from the GPU hosts' group, not a CIDR
    (ingress,) = resources(prod.raw, "AWS::EC2::SecurityGroupIngress").values()
    assert ingress["Properties"]["FromPort"] == 443
    assert "SourceSecurityGroupId" in ingress["Properties"]
    assert "CidrIp" not in ingress["Properties"]
