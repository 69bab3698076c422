"""SNS: completion and alarm topics, encrypted with a rotating key CloudWatch may use, TLS-only;
the webhook signing secret is generated, never written in the template."""

from __future__ import annotations

from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized
from tests.infra.template_queries import logical_id, one, resources


def test_both_topics_are_kms_encrypted_and_tls_only(synthesized: Synthesized) -> None:
    key_id = logical_id(synthesized.raw, "AWS::KMS::Key", "NotificationsTopicKey")
    topics = resources(synthesized.raw, "AWS::SNS::Topic")
    stage = synthesized.config.stage
    # Given the two topics / Then they carry the contract names and the stack's KMS key
    assert sorted(t["Properties"]["TopicName"] for t in topics.values()) == [
        f"musetalk-{stage}-alarms",
        f"musetalk-{stage}-job-completion",
    ]
    for topic_id, topic in topics.items():
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
        synthesized.template.has_resource_properties(
            "AWS::SNS::TopicPolicy",
            {
                "Topics": [{"Ref": topic_id}],
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                },
            },
        )


def test_topic_key_rotates_and_lets_cloudwatch_publish_alarms(synthesized: Synthesized) -> None:
    _, key = one(synthesized.raw, "AWS::KMS::Key", "NotificationsTopicKey")
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [
        s for s in statements if s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
    ]
    assert cloudwatch, "CloudWatch cannot publish alarms to a topic whose key it cannot use"
    granted = {
        a
        for s in cloudwatch
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= granted


def test_webhook_secret_is_generated_with_the_contract_name(synthesized: Synthesized) -> None:
    _, secret = one(synthesized.raw, "AWS::SecretsManager::Secret", "NotificationsWebhook")
    props = secret["Properties"]
    assert props["Name"] == f"musetalk-{synthesized.config.stage}/webhook-signing-secret"
    assert "GenerateSecretString" in props
    assert "SecretString" not in props
    # Letters and digits in a multiple of 4: valid base64, the worker's key (`signing_key`)
    generated = props["GenerateSecretString"]
    assert generated["ExcludePunctuation"] is True
    assert generated["PasswordLength"] % 4 == 0
