"""Small queries over a synthesized template: resources by type, IAM statements by role."""

from __future__ import annotations

import json
from typing import Any

Resources = dict[str, dict[str, Any]]


def resources(raw: dict[str, Any], resource_type: str) -> Resources:
    return {k: v for k, v in raw["Resources"].items() if v["Type"] == resource_type}


def one(raw: dict[str, Any], resource_type: str, logical_id_prefix: str) -> tuple[str, dict]:
    found = {
        k: v for k, v in resources(raw, resource_type).items() if k.startswith(logical_id_prefix)
    }
    assert len(found) == 1, f"expected one {resource_type} named {logical_id_prefix}*: {found}"
    return next(iter(found.items()))


def logical_id(raw: dict[str, Any], resource_type: str, logical_id_prefix: str) -> str:
    return one(raw, resource_type, logical_id_prefix)[0]


def statements_of_role(raw: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of every AWS::IAM::Policy attached to the role."""
    statements: list[dict[str, Any]] = []
    for policy in resources(raw, "AWS::IAM::Policy").values():
        roles = policy["Properties"].get("Roles", [])
        if {"Ref": role_logical_id} in roles:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def mentions(value: Any, logical_id_: str) -> bool:
    """Whether a (possibly intrinsic) value refers to the resource."""
    return f'"{logical_id_}"' in json.dumps(value)


def actions_on(raw: dict[str, Any], role_logical_id: str, resource_logical_id: str) -> set[str]:
    """Actions the role may take on the resource (any statement whose Resource refers to it)."""
    return {
        action
        for statement in statements_of_role(raw, role_logical_id)
        if statement["Effect"] == "Allow" and mentions(statement["Resource"], resource_logical_id)
        for action in actions(statement)
    }


def all_actions(raw: dict[str, Any], role_logical_id: str) -> set[str]:
    return {
        action
        for statement in statements_of_role(raw, role_logical_id)
        if statement["Effect"] == "Allow"
        for action in actions(statement)
    }
