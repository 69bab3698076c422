"""The VPC the GPU hosts run in: two AZs, hosts in private subnets.

S3 and DynamoDB traffic (weights, media, job records) goes through free gateway endpoints. The rest
of AWS (ECR, SQS, SNS, logs, ECS agent, Secrets Manager) goes through interface endpoints when the
stage asks for them, otherwise through NAT. Webhooks to receivers on the internet need NAT.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

_INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Ecs": ec2.InterfaceVpcEndpointAwsService.ECS,
    "EcsAgent": ec2.InterfaceVpcEndpointAwsService.ECS_AGENT,
    "EcsTelemetry": ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "Sns": ec2.InterfaceVpcEndpointAwsService.SNS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
}
# Not here, because nothing on a host calls them: CloudWatch metrics (the worker writes EMF log
# lines; Container Insights goes through ECS telemetry), STS (the agent hands out task-role
# credentials) and SSM (the AMI parameter is resolved by CloudFormation at deploy time).


class Network(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        nat_gateways: int,
        interface_endpoints: bool,
        flow_log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        if nat_gateways == 0 and not interface_endpoints:
            raise ValueError(
                "GPU hosts need a way to reach AWS: set nat_gateways > 0 or interface_endpoints"
            )
        private_type = (
            ec2.SubnetType.PRIVATE_WITH_EGRESS if nat_gateways else ec2.SubnetType.PRIVATE_ISOLATED
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
                ec2.SubnetConfiguration(name="gpu-hosts", subnet_type=private_type),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDb": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
            },
        )
        self.host_subnets = ec2.SubnetSelection(subnet_type=private_type)
        self.host_security_group = ec2.SecurityGroup(
            self,
            "HostSecurityGroup",
            vpc=self.vpc,
            description="GPU hosts: no inbound; outbound to AWS endpoints and webhook receivers",
            allow_all_outbound=True,
        )

        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=flow_log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )

        if interface_endpoints:
            # Only the GPU hosts may use the endpoints (HTTPS), not the whole VPC CIDR.
            endpoint_security_group = ec2.SecurityGroup(
                self,
                "EndpointSecurityGroup",
                vpc=self.vpc,
                description="Interface endpoints: HTTPS from the GPU hosts only",
                allow_all_outbound=False,
            )
            endpoint_security_group.add_ingress_rule(
                self.host_security_group, ec2.Port.tcp(443), "HTTPS from GPU hosts"
            )
            for endpoint_id, service in _INTERFACE_ENDPOINTS.items():
                self.vpc.add_interface_endpoint(
                    endpoint_id,
                    service=service,
                    subnets=self.host_subnets,
                    private_dns_enabled=True,
                    security_groups=[endpoint_security_group],
                    open=False,
                )
