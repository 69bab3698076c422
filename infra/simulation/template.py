"""What the simulation reads from the synthesized CloudFormation template: per lane its queue and
dead-letter queue, service, scalable target and scaling policies; the capacity providers and their
Auto Scaling groups; the alarms that notify someone; and the scheduled functions that touch
queues (`schedules.py`). Nothing here is configured by hand."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.simulation.alarms import Alarm
from infra.simulation.metrics import Query, queries
from infra.simulation.schedules import ScheduledTouch, scheduled_touches

Resources = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class StepPolicy:
    id: str
    adjustment_type: str
    steps: tuple[tuple[float | None, float | None, int], ...]  # (lower, upper, adjustment)
    cooldown: int
    alarm: Alarm


@dataclass(frozen=True)
class TargetTracking:
    id: str
    target: float
    metric: list[Query]
    scale_out_cooldown: int
    scale_in_cooldown: int


@dataclass(frozen=True)
class Provider:
    id: str
    target_capacity: int
    warmup_seconds: int
    min_size: int
    max_size: int
    on_demand: bool
    instance_types: tuple[str, ...]
    drains_on_spot_notice: bool  # agent setting on and the host role allowed to drain


@dataclass(frozen=True)
class Lane:
    name: str  # the worker's MUSETALK_LANES value
    queue: str
    dead_letter_queue: str
    max_receive_count: int
    visibility_timeout: int
    service: str
    cluster: str
    min_tasks: int
    max_tasks: int
    tracking: TargetTracking | None  # none in this stack; read to replay older templates
    steps: tuple[StepPolicy, ...]
    strategy: tuple[tuple[str, int, int], ...]  # (provider id, base, weight)
    stop_timeout: int
    gpu_prices: Mapping[str, float]

    @property
    def jobs_per_task(self) -> float:
        """What one task is sized for: the target, or the width of an exact-capacity step."""
        if self.tracking is not None:
            return self.tracking.target
        for step in self.steps:
            if step.adjustment_type == "ExactCapacity":
                for lower, upper, change in step.steps:
                    if change == 1 and lower is not None and upper is not None:
                        return upper - lower
        raise ValueError(f"{self.name}: no policy says how many jobs a task takes")


@dataclass(frozen=True)
class StackModel:
    lanes: dict[str, Lane]
    providers: dict[str, Provider]
    alarms: list[Alarm]  # those that notify a topic
    consumed_queues: frozenset[str]  # queues a Lambda event source drains
    queue_touches: tuple[ScheduledTouch, ...] = ()  # scheduled GetQueueAttributes (keep-awake)


def _of_type(resources: Resources, kind: str) -> dict[str, Mapping[str, Any]]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def _ref(value: Any) -> str:
    if "Ref" in value:
        return str(value["Ref"])
    return str(value["Fn::GetAtt"][0])


def read(template: Mapping[str, Any]) -> StackModel:
    resources: Resources = template["Resources"]
    providers = {
        k: _provider(resources, k, v)
        for k, v in _of_type(resources, "AWS::ECS::CapacityProvider").items()
    }
    lanes = {}
    for service_id, service in _of_type(resources, "AWS::ECS::Service").items():
        lane = _lane(resources, service_id, service)
        lanes[lane.name] = lane
    topics = set(_of_type(resources, "AWS::SNS::Topic"))
    alarms = [
        Alarm.from_template(k, v)
        for k, v in _of_type(resources, "AWS::CloudWatch::Alarm").items()
        if any(a.get("Ref") in topics for a in v["Properties"].get("AlarmActions", []))
    ]
    consumed = frozenset(
        _ref(v["Properties"]["EventSourceArn"])
        for v in _of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    )
    return StackModel(
        lanes=lanes,
        providers=providers,
        alarms=alarms,
        consumed_queues=consumed,
        queue_touches=scheduled_touches(resources),
    )


def _lane(resources: Resources, service_id: str, service: Mapping[str, Any]) -> Lane:
    props = service["Properties"]
    task = resources[_ref(props["TaskDefinition"])]["Properties"]
    (container,) = task["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    name = env["MUSETALK_LANES"]
    queue_id = _ref(env[f"MUSETALK_{name.upper()}_QUEUE_URL"])
    queue = resources[queue_id]["Properties"]
    redrive = queue["RedrivePolicy"]
    target_id, target = next(
        (k, v)
        for k, v in _of_type(resources, "AWS::ApplicationAutoScaling::ScalableTarget").items()
        if service_id in json.dumps(v["Properties"]["ResourceId"])
    )
    policies = {
        k: v["Properties"]
        for k, v in _of_type(resources, "AWS::ApplicationAutoScaling::ScalingPolicy").items()
        if v["Properties"]["ScalingTargetId"] == {"Ref": target_id}
    }
    return Lane(
        name=name,
        queue=queue_id,
        dead_letter_queue=_ref(redrive["deadLetterTargetArn"]),
        max_receive_count=int(redrive["maxReceiveCount"]),
        visibility_timeout=int(queue["VisibilityTimeout"]),
        service=service_id,
        cluster=_ref(props["Cluster"]),
        min_tasks=int(target["Properties"]["MinCapacity"]),
        max_tasks=int(target["Properties"]["MaxCapacity"]),
        tracking=_tracking(policies),
        steps=tuple(
            _step(resources, k, p) for k, p in policies.items() if p["PolicyType"] == "StepScaling"
        ),
        strategy=tuple(
            (_ref(s["CapacityProvider"]), int(s.get("Base", 0)), int(s.get("Weight", 0)))
            for s in props["CapacityProviderStrategy"]
        ),
        stop_timeout=int(container["StopTimeout"]),
        gpu_prices=json.loads(env.get("MUSETALK_GPU_PRICES_JSON", "{}")),
    )


def _tracking(policies: Mapping[str, Mapping[str, Any]]) -> TargetTracking | None:
    found = [(k, p) for k, p in policies.items() if p["PolicyType"] == "TargetTrackingScaling"]
    if not found:
        return None
    ((policy_id, props),) = found
    config = props["TargetTrackingScalingPolicyConfiguration"]
    return TargetTracking(
        id=policy_id,
        target=float(config["TargetValue"]),
        metric=queries(config["CustomizedMetricSpecification"]["Metrics"]),
        scale_out_cooldown=int(config.get("ScaleOutCooldown", 300)),
        scale_in_cooldown=int(config.get("ScaleInCooldown", 300)),
    )


def _step(resources: Resources, policy_id: str, props: Mapping[str, Any]) -> StepPolicy:
    config = props["StepScalingPolicyConfiguration"]
    ((alarm_id, alarm),) = [
        (k, v)
        for k, v in _of_type(resources, "AWS::CloudWatch::Alarm").items()
        if {"Ref": policy_id} in v["Properties"].get("AlarmActions", [])
    ]
    return StepPolicy(
        id=policy_id,
        adjustment_type=config["AdjustmentType"],
        steps=tuple(
            (
                s.get("MetricIntervalLowerBound"),
                s.get("MetricIntervalUpperBound"),
                int(s["ScalingAdjustment"]),
            )
            for s in config["StepAdjustments"]
        ),
        cooldown=int(config.get("Cooldown", 300)),
        alarm=Alarm.from_template(alarm_id, alarm),
    )


def _provider(resources: Resources, provider_id: str, provider: Mapping[str, Any]) -> Provider:
    config = provider["Properties"]["AutoScalingGroupProvider"]
    scaling = config["ManagedScaling"]
    group = resources[_ref(config["AutoScalingGroupArn"])]["Properties"]
    mixed = group["MixedInstancesPolicy"]
    template_id = _ref(mixed["LaunchTemplate"]["LaunchTemplateSpecification"]["LaunchTemplateId"])
    launch = resources[template_id]["Properties"]["LaunchTemplateData"]
    profile = resources[_ref(launch["IamInstanceProfile"]["Arn"])]["Properties"]
    (role,) = [_ref(r) for r in profile["Roles"]]
    return Provider(
        id=provider_id,
        target_capacity=int(scaling.get("TargetCapacity", 100)),
        warmup_seconds=int(scaling.get("InstanceWarmupPeriod", 300)),
        min_size=int(group["MinSize"]),
        max_size=int(group["MaxSize"]),
        on_demand=mixed["InstancesDistribution"].get("OnDemandPercentageAboveBaseCapacity") == 100,
        instance_types=tuple(
            o["InstanceType"] for o in mixed["LaunchTemplate"].get("Overrides", [])
        ),
        drains_on_spot_notice="ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" in json.dumps(launch)
        and _role_may(resources, role, "ecs:UpdateContainerInstancesState"),
    )


def _role_may(resources: Resources, role: str, action: str) -> bool:
    for policy in _of_type(resources, "AWS::IAM::Policy").values():
        props = policy["Properties"]
        if {"Ref": role} not in props.get("Roles", []):
            continue
        for statement in props["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            if statement["Effect"] == "Allow" and action in (
                [actions] if isinstance(actions, str) else actions
            ):
                return True
    return False
