"""Scheduled functions that touch queues, read from the template: an EventBridge rule with a
`rate(...)` schedule that invokes a Lambda function whose role may `sqs:GetQueueAttributes` on a
queue. Each invocation counts as an action on the queue (it keeps the queue awake for CloudWatch,
docs/simulation.md "SQS"); the template says what the function may do, the sweeper's tests say
that it does it (`runtime/api/queue_wake.py`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

Resources = Mapping[str, Mapping[str, Any]]

TOUCH_ACTION = "sqs:GetQueueAttributes"
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class ScheduledTouch:
    rule: str
    function: str
    interval: int  # seconds between invocations
    queues: frozenset[str]  # logical ids of the queues it may touch


def scheduled_touches(resources: Resources) -> tuple[ScheduledTouch, ...]:
    found = []
    for rule_id, rule in resources.items():
        if rule["Type"] != "AWS::Events::Rule":
            continue
        props = rule["Properties"]
        interval = rate_seconds(props.get("ScheduleExpression", ""))
        if interval is None or props.get("State", "ENABLED") != "ENABLED":
            continue
        for target in props.get("Targets", []):
            function = _function_of(resources, target.get("Arn"))
            if function is None:
                continue
            queues = queues_role_may(resources, _role_of(resources[function]), TOUCH_ACTION)
            if queues:
                found.append(ScheduledTouch(rule_id, function, interval, queues))
    return tuple(found)


def rate_seconds(expression: str) -> int | None:
    """`rate(2 minutes)` -> 120; None for anything else (cron schedules are not modelled)."""
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).removesuffix("s")]


def queues_role_may(resources: Resources, role: str | None, action: str) -> frozenset[str]:
    """The queues (logical ids) on which an Allow statement of the role's policies grants the
    action (wildcards as IAM matches actions; `*` as the resource means every queue)."""
    if role is None:
        return frozenset()
    queues = {k for k, v in resources.items() if v["Type"] == "AWS::SQS::Queue"}
    allowed: set[str] = set()
    for policy in resources.values():
        props = policy.get("Properties", {})
        if policy["Type"] != "AWS::IAM::Policy" or {"Ref": role} not in props.get("Roles", []):
            continue
        for statement in props["PolicyDocument"]["Statement"]:
            if statement["Effect"] != "Allow" or not _any_matches(statement["Action"], action):
                continue
            for resource in _as_list(statement["Resource"]):
                if resource == "*":
                    allowed |= queues
                elif isinstance(resource, dict) and resource.get("Fn::GetAtt", [None])[0] in queues:
                    allowed.add(resource["Fn::GetAtt"][0])
    return frozenset(allowed)


def _function_of(resources: Resources, arn: Any) -> str | None:
    if not isinstance(arn, dict) or "Fn::GetAtt" not in arn:
        return None
    target = arn["Fn::GetAtt"][0]
    return target if resources.get(target, {}).get("Type") == "AWS::Lambda::Function" else None


def _role_of(function: Mapping[str, Any]) -> str | None:
    role = function["Properties"].get("Role")
    return role["Fn::GetAtt"][0] if isinstance(role, dict) and "Fn::GetAtt" in role else None


def _any_matches(patterns: Any, action: str) -> bool:
    return any(fnmatchcase(action.lower(), p.lower()) for p in _as_list(patterns))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
