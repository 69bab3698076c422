"""S3 buckets: uploads (faces and voices), rendered outputs, model weights, prepared-avatar cache,
and the access-log bucket they all log to.

Every bucket is private, encrypted, TLS-only and retained on stack deletion (it holds user data or
weights someone paid to upload), except when the create that made it rolls back
(`RetainExceptOnCreate`): a failed first deploy leaves no bucket whose fixed name would block the
next one. Personal data expires on a per-stage schedule; the avatar cache
expires when unused because the worker re-writes an entry it hits once it is older than half the
expiry.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.components.nag import acknowledge
from runtime.common.bucket_cors import bucket_cors_rules
from runtime.common.names import BucketRole, ResourceNames
from runtime.common.preview import PREVIEW_EXPIRE_DAYS, PREVIEW_EXPIRY_RULE, PREVIEW_TAG

# Multipart uploads a browser abandons still cost money and hold personal data.
_ABORT_INCOMPLETE_UPLOADS = Duration.days(1)
_ACCESS_LOG_RETENTION = Duration.days(365)
_OLD_WEIGHT_VERSIONS = Duration.days(30)


class Storage(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        uploads_expire_days: int,
        outputs_expire_days: int,
        avatar_cache_expire_days: int,
        cors_allowed_origins: tuple[str, ...],
    ) -> None:
        super().__init__(scope, construct_id)

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=names.bucket(BucketRole.ACCESS_LOGS),
            # S3 server access logging can only deliver to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=_ACCESS_LOG_RETENTION)],
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the access-log bucket; logging it into itself would loop.",
        )

        self.uploads = self._bucket(
            "Uploads",
            names.bucket(BucketRole.UPLOADS),
            lifecycle_rules=[self._expire("expire-personal-data", uploads_expire_days)],
            cors=_cors(BucketRole.UPLOADS, cors_allowed_origins),
        )
        self.outputs = self._bucket(
            "Outputs",
            names.bucket(BucketRole.OUTPUTS),
            lifecycle_rules=[
                self._expire("expire-personal-data", outputs_expire_days),
                # Live-preview segments and playlists, once the preview's grace is long over.
                s3.LifecycleRule(
                    id=PREVIEW_EXPIRY_RULE,
                    expiration=Duration.days(PREVIEW_EXPIRE_DAYS),
                    tag_filters={PREVIEW_TAG[0]: PREVIEW_TAG[1]},
                ),
            ],
            cors=_cors(BucketRole.OUTPUTS, cors_allowed_origins),
        )
        self.avatar_cache = self._bucket(
            "AvatarCache",
            names.bucket(BucketRole.AVATAR_CACHE),
            lifecycle_rules=[self._expire("expire-unused", avatar_cache_expire_days)],
        )
        # Versioned so a bad upload of weights can be rolled back; old versions expire.
        self.weights = self._bucket(
            "Weights",
            names.bucket(BucketRole.WEIGHTS),
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-versions",
                    noncurrent_version_expiration=_OLD_WEIGHT_VERSIONS,
                    abort_incomplete_multipart_upload_after=_ABORT_INCOMPLETE_UPLOADS,
                )
            ],
        )

    @staticmethod
    def _expire(rule_id: str, days: int) -> s3.LifecycleRule:
        return s3.LifecycleRule(
            id=rule_id,
            expiration=Duration.days(days),
            abort_incomplete_multipart_upload_after=_ABORT_INCOMPLETE_UPLOADS,
        )

    def _bucket(
        self,
        construct_id: str,
        bucket_name: str,
        *,
        lifecycle_rules: list[s3.LifecycleRule],
        cors: list[s3.CorsRule] | None = None,
        versioned: bool = False,
    ) -> s3.Bucket:
        return s3.Bucket(
            self,
            construct_id,
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=f"{bucket_name}/",
            lifecycle_rules=lifecycle_rules,
            cors=cors,
            versioned=versioned,
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )


def _cors(role: BucketRole, origins: tuple[str, ...]) -> list[s3.CorsRule] | None:
    """The browser rules of `runtime.common.bucket_cors` (also local mode's), as CDK rules."""
    rules = [
        s3.CorsRule(
            allowed_methods=[s3.HttpMethods(method) for method in rule["AllowedMethods"]],
            allowed_origins=rule["AllowedOrigins"],
            allowed_headers=rule["AllowedHeaders"],
            exposed_headers=rule.get("ExposeHeaders"),
            max_age=rule["MaxAgeSeconds"],
        )
        for rule in bucket_cors_rules(role, origins)
    ]
    return rules or None
