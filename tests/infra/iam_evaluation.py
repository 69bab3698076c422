"""Whether a role's synthesized policy allows an S3 action on one object, or an SQS action on one
queue, matched as IAM does.

IAM matches a resource ARN segment by segment (the parts between colons; the last segment is
everything after the fifth colon, an S3 bucket and key): `*` stands for any run of characters,
slashes included, and `?` for exactly one; nothing else is special, and the match is case
sensitive. Action names match case-insensitively, with the same wildcards. An explicit Deny wins.
A statement's `StringEquals` / `StringLike` conditions hold where every listed key of the request
context has one of the listed values (a key the request lacks fails them, as in IAM); other
operators are not evaluated here.
"""

from __future__ import annotations

import re
from typing import Any

from tests.infra.template_queries import resources, statements_of_role

_SEGMENTS = 6  # arn:partition:service:region:account:resource
# Stand-ins for the deployment's region and account in an SQS ARN (an unresolved `Fn::GetAtt`
# of a queue resolves with them, so only that queue's ARN matches it).
_REGION, _ACCOUNT = "us-east-1", "123456789012"


def wildcard_matches(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """`*` = any characters (none included), `?` = one character; everything else literal."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    flags = re.DOTALL | (0 if case_sensitive else re.IGNORECASE)
    return re.fullmatch(regex, value, flags) is not None


def arn_matches(pattern: str, arn: str) -> bool:
    if pattern == "*":
        return True
    wanted = pattern.split(":", _SEGMENTS - 1)
    actual = arn.split(":", _SEGMENTS - 1)
    if len(wanted) != _SEGMENTS or len(actual) != _SEGMENTS:
        return False
    # A `*` ending a segment may also run over the colons after it (rare; not in our ARNs).
    return all(wildcard_matches(w, a) for w, a in zip(wanted, actual, strict=True))


def object_arn(bucket_logical_id: str, key: str) -> str:
    """The ARN the evaluation uses for a key of the template's bucket (named by its logical id)."""
    return f"{_bucket_arn(bucket_logical_id)}/{key}"


def may(raw: dict[str, Any], role: str, action: str, bucket_logical_id: str, key: str) -> bool:
    """Whether `role` may take `action` (e.g. `s3:DeleteObject`) on `key` of the bucket."""
    return _allowed(raw, role, action, object_arn(bucket_logical_id, key), {})


def may_list(
    raw: dict[str, Any], role: str, bucket_logical_id: str, *, prefix: str, delimiter: str
) -> bool:
    """Whether `role` may list the bucket (`s3:ListBucket`) with this prefix and delimiter
    ("" where the request has none)."""
    context = {k: v for k, v in (("s3:prefix", prefix), ("s3:delimiter", delimiter)) if v}
    return _allowed(raw, role, "s3:ListBucket", _bucket_arn(bucket_logical_id), context)


def may_on_queue(raw: dict[str, Any], role: str, action: str, queue_logical_id: str) -> bool:
    """Whether `role` may take `action` (e.g. `sqs:GetQueueAttributes`) on the template's queue."""
    return _allowed(raw, role, action, _queue_arn(queue_logical_id), {})


def _allowed(
    raw: dict[str, Any], role: str, action: str, arn: str, context: dict[str, str]
) -> bool:
    allowed = False
    queues = set(resources(raw, "AWS::SQS::Queue"))
    for statement in statements_of_role(raw, role):
        if "NotAction" in statement or "NotResource" in statement:
            raise AssertionError(f"not evaluated here: {statement}")
        if not _applies(statement, action, arn, queues):
            continue
        if not conditions_hold(statement.get("Condition", {}), context):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def conditions_hold(conditions: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    for operator, keys in conditions.items():
        if operator not in ("StringEquals", "StringLike"):
            raise AssertionError(f"condition operator not evaluated here: {operator}")
        for key, wanted in keys.items():
            value = context.get(key)
            if value is None:
                return False
            if operator == "StringEquals" and value not in _as_list(wanted):
                return False
            if operator == "StringLike" and not any(
                wildcard_matches(pattern, value) for pattern in _as_list(wanted)
            ):
                return False
    return True


def _applies(statement: dict[str, Any], action: str, arn: str, queues: set[str]) -> bool:
    action_patterns = _as_list(statement["Action"])
    if not any(wildcard_matches(p, action, case_sensitive=False) for p in action_patterns):
        return False
    return any(arn_matches(_resolve(r, queues), arn) for r in _as_list(statement["Resource"]))


def _resolve(value: Any, queues: set[str]) -> str:
    """A Resource value with the intrinsics CDK writes for bucket and queue ARNs resolved (the
    template's `queues` are queues, any other `Fn::GetAtt ... Arn` a bucket); anything else
    becomes a string no ARN equals (so an unresolved grant never counts as allowing)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_resolve(part, queues) for part in parts)
    if isinstance(value, dict) and "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
        logical_id = value["Fn::GetAtt"][0]
        return _queue_arn(logical_id) if logical_id in queues else _bucket_arn(logical_id)
    if value == {"Ref": "AWS::Partition"}:
        return "aws"
    return f"<unresolved {value!r}>"


def _queue_arn(logical_id: str) -> str:
    return f"arn:aws:sqs:{_REGION}:{_ACCOUNT}:{logical_id}"


def _bucket_arn(logical_id: str) -> str:
    return f"arn:aws:s3:::{logical_id}"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
