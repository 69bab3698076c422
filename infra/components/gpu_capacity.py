"""GPU hosts: the ECS cluster and its capacity providers.

The main provider is an Auto Scaling group of spot GPU instances (price-capacity-optimized over
several instance types: the cheapest pools among those least likely to be interrupted, so a
shortage of one type does not stop the fleet). An optional on-demand provider
backs the interactive lane's warm tasks. ECS managed scaling sizes the groups from the tasks the
services want; managed termination protection keeps ECS from losing an instance that still runs
a task.

Hosts boot the ECS GPU-optimized AMI (resolved from its public SSM parameter at deploy time, no
lookups at synth), require IMDSv2 with a hop limit of 1 so containers cannot reach the instance
role, and have an encrypted root volume.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.components.nag import acknowledge
from runtime.common.cost import HOST_INFO_FILE_NAME, HOST_INFO_HOST_DIR

ROOT_VOLUME_THROUGHPUT_MIBPS = 500


class GpuCapacity(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        host_subnets: ec2.SubnetSelection,
        host_security_group: ec2.ISecurityGroup,
        instance_types: tuple[str, ...],
        max_instances: int,
        root_volume_gib: int,
        container_stop_timeout_seconds: int,
        on_demand_fallback: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        if not instance_types:
            raise ValueError("gpu_instance_types must name at least one instance type")

        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        self._security_group = host_security_group
        self._vpc = vpc
        self._host_subnets = host_subnets
        self._instance_types = instance_types
        self._root_volume_gib = root_volume_gib
        self._stop_timeout = container_stop_timeout_seconds

        self.spot = self._capacity_provider(
            "Spot", max_instances=max_instances, on_demand_percentage=0
        )
        self.on_demand: ecs.AsgCapacityProvider | None = None
        if on_demand_fallback:
            self.on_demand = self._capacity_provider(
                "OnDemand", max_instances=max_instances, on_demand_percentage=100
            )

    def _capacity_provider(
        self, name: str, *, max_instances: int, on_demand_percentage: int
    ) -> ecs.AsgCapacityProvider:
        role = iam.Role(
            self,
            f"{name}HostRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="ECS container instance: registers with the cluster, pulls the image",
        )
        launch_template = self._launch_template(name, role)
        group = self._group(
            name,
            launch_template,
            max_instances=max_instances,
            on_demand_percentage=on_demand_percentage,
        )
        provider = ecs.AsgCapacityProvider(
            self,
            f"{name}CapacityProvider",
            auto_scaling_group=group,
            enable_managed_scaling=True,
            enable_managed_termination_protection=True,
            target_capacity_percent=100,
        )
        # Registers the hosts with the cluster (adds ECS_CLUSTER to the user data).
        self.cluster.add_asg_capacity_provider(provider)
        # On a spot interruption notice the agent sets its own instance to DRAINING, so ECS
        # stops its tasks (SIGTERM) and starts replacements elsewhere; without this the call is
        # denied and the tasks die with the host two minutes later.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:UpdateContainerInstancesState"],
                resources=["*"],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            )
        )
        self._configure_agent(launch_template)
        _acknowledge_host_findings(group, role)
        return provider

    def _launch_template(self, name: str, role: iam.IRole) -> ec2.LaunchTemplate:
        """The GPU AMI, IMDSv2 out of containers' reach, an encrypted fast root volume."""
        return ec2.LaunchTemplate(
            self,
            f"{name}LaunchTemplate",
            machine_image=ecs.EcsOptimizedImage.amazon_linux2023(ecs.AmiHardwareType.GPU),
            role=role,
            security_group=self._security_group,
            require_imdsv2=True,
            http_put_response_hop_limit=1,
            user_data=ec2.UserData.for_linux(),
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        self._root_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        # The default 125 MiB/s makes a new host's image extraction and weight
                        # sync (~10 GB each) disk-bound; 3000 IOPS (gp3's free baseline) allows
                        # up to 750 MiB/s. Billed only while a host runs.
                        throughput=ROOT_VOLUME_THROUGHPUT_MIBPS,
                        iops=3000,
                        delete_on_termination=True,
                    ),
                )
            ],
        )

    def _group(
        self,
        name: str,
        launch_template: ec2.LaunchTemplate,
        *,
        max_instances: int,
        on_demand_percentage: int,
    ) -> autoscaling.AutoScalingGroup:
        return autoscaling.AutoScalingGroup(
            self,
            f"{name}Group",
            vpc=self._vpc,
            vpc_subnets=self._host_subnets,
            min_capacity=0,
            max_capacity=max_instances,
            # Required by managed termination protection.
            new_instances_protected_from_scale_in=True,
            capacity_rebalance=on_demand_percentage == 0,
            default_instance_warmup=Duration.minutes(5),
            mixed_instances_policy=autoscaling.MixedInstancesPolicy(
                launch_template=launch_template,
                launch_template_overrides=[
                    autoscaling.LaunchTemplateOverrides(instance_type=ec2.InstanceType(t))
                    for t in self._instance_types
                ],
                instances_distribution=autoscaling.InstancesDistribution(
                    on_demand_base_capacity=0,
                    on_demand_percentage_above_base_capacity=on_demand_percentage,
                    on_demand_allocation_strategy=autoscaling.OnDemandAllocationStrategy.PRIORITIZED,
                    spot_allocation_strategy=(
                        autoscaling.SpotAllocationStrategy.PRICE_CAPACITY_OPTIMIZED
                    ),
                ),
            ),
        )

    def _configure_agent(self, launch_template: ec2.LaunchTemplate) -> None:
        """The construct's spot-draining flag is dropped when the group has a mixed instances
        policy, so the agent settings are written here: drain on the 2-minute spot notice, and
        give containers the full stop timeout to hand their job back."""
        launch_template.user_data.add_commands(  # type: ignore[union-attr]
            "cat >> /etc/ecs/ecs.config <<'EOF'",
            "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
            f"ECS_CONTAINER_STOP_TIMEOUT={self._stop_timeout}s",
            "ECS_ENABLE_TASK_IAM_ROLE=true",
            "ECS_ENABLE_GPU_SUPPORT=true",
            "EOF",
            # The instance type for per-job cost, read here because containers cannot reach
            # IMDS (hop limit 1); mounted read-only into the worker (runtime.common.cost).
            f"mkdir -p {HOST_INFO_HOST_DIR}",
            "IMDS_TOKEN=$(curl -sS -X PUT http://169.254.169.254/latest/api/token"
            ' -H "X-aws-ec2-metadata-token-ttl-seconds: 60")',
            'INSTANCE_TYPE=$(curl -sS -H "X-aws-ec2-metadata-token: $IMDS_TOKEN"'
            " http://169.254.169.254/latest/meta-data/instance-type)",
            f'printf \'{{"instance_type": "%s"}}\' "$INSTANCE_TYPE"'
            f" > {HOST_INFO_HOST_DIR}/{HOST_INFO_FILE_NAME}",
        )


def _acknowledge_host_findings(group: autoscaling.AutoScalingGroup, role: iam.Role) -> None:
    acknowledge(
        group,
        "AwsSolutions-AS3",
        "Scaling is driven by ECS managed scaling; launches and terminations are in the ECS "
        "and Auto Scaling activity history, and the stack alarms on what users feel (queue "
        "age, DLQ, failures).",
    )
    for finding in ("AwsSolutions-IAM5[Action::ecs:Submit*]", "AwsSolutions-IAM5[Resource::*]"):
        acknowledge(
            role,
            finding,
            "The ECS agent's standard container-instance permissions (added by "
            "Cluster.addAsgCapacityProvider): ecs:Submit* state changes and actions on "
            "tasks and instances whose ids are not known in advance.",
        )
    acknowledge(
        group,
        "AwsSolutions-EC26",
        "The rule cannot read a MixedInstancesPolicy launch template (it throws); the launch "
        "template's only block device is encrypted, asserted in tests/infra.",
    )
