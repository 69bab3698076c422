"""Storage: private, encrypted, TLS-only, logged buckets; personal data expires per stage."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match

from runtime.common.names import BucketRole
from runtime.common.preview import PREVIEW_EXPIRE_DAYS, PREVIEW_EXPIRY_RULE, PREVIEW_TAG
from tests.infra.conftest import Synthesized
from tests.infra.template_queries import one, resources

_PREFIX = {
    BucketRole.UPLOADS: "StorageUploads",
    BucketRole.OUTPUTS: "StorageOutputs",
    BucketRole.WEIGHTS: "StorageWeights",
    BucketRole.AVATAR_CACHE: "StorageAvatarCache",
    BucketRole.ACCESS_LOGS: "StorageAccessLogs",
}


def _bucket(s: Synthesized, role: BucketRole) -> tuple[str, dict]:
    return one(s.raw, "AWS::S3::Bucket", _PREFIX[role])


def _expiration_days(bucket: dict) -> list[int]:
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    return [rule["ExpirationInDays"] for rule in rules if "ExpirationInDays" in rule]


def test_every_bucket_is_private_encrypted_and_retained(synthesized: Synthesized) -> None:
    # Given the synthesized stack / When we read its buckets
    buckets = resources(synthesized.raw, "AWS::S3::Bucket")
    # Then there is one per role, none public, all encrypted, none deleted with the stack
    assert len(buckets) == len(BucketRole)
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
        # Kept on delete/update; deleted when the create that made it rolls back, so a failed
        # first deploy leaves no fixed name behind to block the next one.
        assert bucket["DeletionPolicy"] == "RetainExceptOnCreate", logical_id


def test_every_bucket_denies_requests_without_tls(synthesized: Synthesized) -> None:
    # Given each bucket / When we look for its bucket policy
    for logical_id in resources(synthesized.raw, "AWS::S3::Bucket"):
        # Then a policy on that bucket denies s3:* when aws:SecureTransport is false
        synthesized.template.has_resource_properties(
            "AWS::S3::BucketPolicy",
            {
                "Bucket": {"Ref": logical_id},
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Action": "s3:*",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                },
            },
        )


def test_data_buckets_log_access_to_the_access_log_bucket(synthesized: Synthesized) -> None:
    # Given the access-log bucket
    logs_id, _ = _bucket(synthesized, BucketRole.ACCESS_LOGS)
    # Then every other bucket sends its server access logs there
    for role in set(BucketRole) - {BucketRole.ACCESS_LOGS}:
        _, bucket = _bucket(synthesized, role)
        logging = bucket["Properties"]["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == {"Ref": logs_id}, role


def test_bucket_names_come_from_resource_names_with_account_and_region(
    synthesized: Synthesized,
) -> None:
    # Given a bucket's physical name / Then it is ResourceNames' layout with deploy-time tokens
    for role in BucketRole:
        _, bucket = _bucket(synthesized, role)
        name = bucket["Properties"]["BucketName"]["Fn::Join"][1]
        stage = synthesized.config.stage
        assert name == [
            f"musetalk-{stage}-{role.value}-",
            {"Ref": "AWS::AccountId"},
            "-",
            {"Ref": "AWS::Region"},
        ]


def test_personal_data_expires_after_the_stage_retention(synthesized: Synthesized) -> None:
    # Given the stage config
    config = synthesized.config
    # Then uploads, outputs and the avatar cache expire after the configured days
    assert _expiration_days(_bucket(synthesized, BucketRole.UPLOADS)[1]) == [
        config.uploads_expire_days
    ]
    assert _expiration_days(_bucket(synthesized, BucketRole.OUTPUTS)[1]) == [
        config.outputs_expire_days,
        PREVIEW_EXPIRE_DAYS,
    ]
    assert _expiration_days(_bucket(synthesized, BucketRole.AVATAR_CACHE)[1]) == [
        config.avatar_cache_expire_days
    ]
    # And weights (not personal data) never expire; only superseded versions do
    assert _expiration_days(_bucket(synthesized, BucketRole.WEIGHTS)[1]) == []


def test_retention_differs_between_dev_and_prod(dev: Synthesized, prod: Synthesized) -> None:
    # Given two stages with different retention / Then the templates differ accordingly
    assert dev.config.uploads_expire_days != prod.config.uploads_expire_days
    assert _expiration_days(_bucket(dev, BucketRole.UPLOADS)[1]) != _expiration_days(
        _bucket(prod, BucketRole.UPLOADS)[1]
    )


@pytest.mark.parametrize("role", [BucketRole.UPLOADS])
def test_cors_allows_only_presigned_browser_uploads(dev: Synthesized, role: BucketRole) -> None:
    # Given the uploads bucket's CORS rules
    rules = _bucket(dev, role)[1]["Properties"]["CorsConfiguration"]["CorsRules"]
    # Then browsers may only PUT/POST (the presigned requests), nothing else
    assert [sorted(rule["AllowedMethods"]) for rule in rules] == [["POST", "PUT"]]


def test_only_uploads_and_outputs_accept_browser_requests(dev: Synthesized) -> None:
    # Given the weights and avatar-cache buckets / Then no CORS rule opens them to browsers
    for role in (BucketRole.WEIGHTS, BucketRole.AVATAR_CACHE, BucketRole.ACCESS_LOGS):
        assert "CorsConfiguration" not in _bucket(dev, role)[1]["Properties"]


def test_outputs_may_be_read_by_pages_of_the_stage_only(
    dev: Synthesized, prod: Synthesized
) -> None:
    # Given dev, which lists the playground's local origin, and prod, which lists none
    (rule,) = _bucket(dev, BucketRole.OUTPUTS)[1]["Properties"]["CorsConfiguration"]["CorsRules"]
    # Then dev's pages may GET (hls.js, the download) and nothing else, from that origin only
    assert sorted(rule["AllowedMethods"]) == ["GET", "HEAD"]
    assert rule["AllowedOrigins"] == list(dev.config.cors_allowed_origins)
    # And prod opens no bucket to any page
    for role in BucketRole:
        assert "CorsConfiguration" not in _bucket(prod, role)[1]["Properties"]


def test_preview_objects_expire_by_their_tag_a_day_after_they_were_written(
    dev: Synthesized,
) -> None:
    # Given the outputs bucket's rules / Then the previews' rule matches their tag only
    rules = _bucket(dev, BucketRole.OUTPUTS)[1]["Properties"]["LifecycleConfiguration"]["Rules"]
    (rule,) = [rule for rule in rules if rule.get("Id") == PREVIEW_EXPIRY_RULE]
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == PREVIEW_EXPIRE_DAYS == 1
    assert rule["TagFilters"] == [{"Key": PREVIEW_TAG[0], "Value": PREVIEW_TAG[1]}]
    assert "Prefix" not in rule
