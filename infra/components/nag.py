"""cdk-nag acknowledgements (one call per finding, its reason next to it) and the exact-action
grants that keep IAM findings few.

CDK's `bucket.grant_read/grant_put` add action groups (`s3:GetObject*`, `s3:List*`, `s3:Abort*`)
broader than what our code calls; `grant_objects` grants only the named actions. What stays
wildcarded is the object key inside one named bucket, or the indexes of one named table, which
`acknowledge_*` record with the reason.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge one finding (`AwsSolutions-XYZ` or `AwsSolutions-IAM5[Resource::...]`) on a
    construct and everything under it."""
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))


def grant_objects(grantee: iam.IGrantable, bucket: s3.IBucket, *actions: str) -> None:
    """Object-level `actions` on every key of `bucket`, and ListBucket so a missing key reads as
    404 rather than 403."""
    iam.Grant.add_to_principal(
        grantee=grantee, actions=list(actions), resource_arns=[bucket.arn_for_objects("*")]
    )
    grant_listing(grantee, bucket)
    acknowledge(
        _role(grantee),
        f"AwsSolutions-IAM5[Resource::<{_logical_id(bucket)}.Arn>/*]",
        f"Keys are created at runtime (per tenant, job, avatar) inside {bucket.node.id} only.",
    )


def grant_listing(
    grantee: iam.IGrantable, bucket: s3.IBucket, *, folders_under: str | None = None
) -> None:
    """s3:ListBucket, without which S3 answers 403 rather than 404 for a missing key (and a
    prefix cannot be listed). With `folders_under`, only a listing of that prefix with the "/"
    delimiter: the folder names directly under it, no key below them."""
    conditions = (
        None
        if folders_under is None
        else {"StringEquals": {"s3:prefix": folders_under, "s3:delimiter": "/"}}
    )
    iam.Grant.add_to_principal(
        grantee=grantee,
        actions=["s3:ListBucket"],
        resource_arns=[bucket.bucket_arn],
        conditions=conditions,
    )


def grant_objects_under(
    grantee: iam.IGrantable, bucket: s3.IBucket, key_pattern: str, *actions: str, why: str
) -> None:
    """Object-level `actions` on the keys of `bucket` matching `key_pattern` only (e.g. a
    job's render segments), where the whole bucket would be more than the code needs."""
    iam.Grant.add_to_principal(
        grantee=grantee, actions=list(actions), resource_arns=[bucket.arn_for_objects(key_pattern)]
    )
    acknowledge(
        _role(grantee),
        f"AwsSolutions-IAM5[Resource::<{_logical_id(bucket)}.Arn>/{key_pattern}]",
        why,
    )


def acknowledge_table_indexes(grantee: iam.IGrantable, table: dynamodb.ITable) -> None:
    acknowledge(
        _role(grantee),
        f"AwsSolutions-IAM5[Resource::<{_logical_id(table)}.Arn>/index/*]",
        f"Queries go through the indexes of {table.node.id} only (by_tenant, unsent).",
    )


def acknowledge_kms_data_keys(grantee: iam.IGrantable) -> None:
    acknowledge(
        _role(grantee),
        "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
        "Publishing to the encrypted topics needs a data key from their one KMS key; the "
        "statement is scoped to that key (added by Topic.grantPublish).",
    )


def _logical_id(construct: IConstruct) -> str:
    child = construct.node.default_child
    if not isinstance(child, CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource")
    return Stack.of(construct).get_logical_id(child)


def _role(grantee: iam.IGrantable) -> IConstruct:
    """Findings on grants sit on the principal's policy, so acknowledge them on the role."""
    principal = grantee.grant_principal
    if not isinstance(principal, Construct):
        raise TypeError("grants must go to a role defined in this app")
    return principal
