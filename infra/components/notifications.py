"""SNS topics (job completion, alarms) and the webhook signing secret.

Both topics use one customer-managed KMS key: CloudWatch alarms cannot publish to a topic encrypted
with the AWS-managed SNS key, and subscribers (SQS, Lambda) in the user's account can be granted
decrypt on a key they can see. Completion events carry the `status` and `tenant` message
attributes so subscribers filter without parsing bodies.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.components.nag import acknowledge
from runtime.common.names import ResourceNames

_SECRET_LENGTH = 48


class Notifications(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        alarm_emails: tuple[str, ...],
    ) -> None:
        super().__init__(scope, construct_id)

        self.key = kms.Key(
            self,
            "TopicKey",
            description=f"{names.prefix}: encrypts the job-completion and alarm topics",
            enable_key_rotation=True,
            pending_window=Duration.days(7),
            removal_policy=RemovalPolicy.DESTROY,
        )
        # CloudWatch publishes alarm notifications as a service principal.
        self.key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*"
        )

        self.completion_topic = sns.Topic(
            self,
            "JobCompletion",
            topic_name=names.completion_topic,
            display_name="MuseTalk job completion (attributes: status, tenant)",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.alarm_topic = sns.Topic(
            self,
            "Alarms",
            topic_name=names.alarm_topic,
            display_name="MuseTalk alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        # Each address gets a confirmation mail from SNS before alarms reach it.
        for email in alarm_emails:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(email))

        # Signs webhook bodies (HMAC); the worker reads it by ARN at start-up, never from env.
        self.webhook_secret = secretsmanager.Secret(
            self,
            "WebhookSigningSecret",
            secret_name=names.webhook_secret,
            description="HMAC key that signs job-completion webhooks",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=_SECRET_LENGTH
            ),
        )
        acknowledge(
            self.webhook_secret,
            "AwsSolutions-SMG4",
            "Webhook receivers verify signatures with this key; rotating it automatically would "
            "break them. Rotation is a documented manual step (docs/deploy.md).",
        )
