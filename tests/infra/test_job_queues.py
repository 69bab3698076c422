"""SQS: one queue per lane with its own DLQ, encrypted, TLS-only, visibility matched to the
worker heartbeat."""

from __future__ import annotations

from aws_cdk.assertions import Match

from infra.config import LaneConfig
from runtime.common.names import Lane
from tests.infra.conftest import Synthesized
from tests.infra.template_queries import logical_id, one, resources


def _lane_config(s: Synthesized, lane: Lane) -> LaneConfig:
    return s.config.interactive if lane is Lane.INTERACTIVE else s.config.batch


def test_each_lane_redrives_to_its_own_dlq_after_max_receive_count(
    synthesized: Synthesized,
) -> None:
    for lane in Lane:
        title = lane.value.title()
        # Given the lane's queue and DLQ
        _, queue = one(
            synthesized.raw, "AWS::SQS::Queue", f"Queues{title}{_suffix(synthesized, title)}"
        )
        dlq_id = logical_id(synthesized.raw, "AWS::SQS::Queue", f"Queues{title}DeadLetters")
        # Then failed deliveries go to that DLQ after the configured number of receives
        assert queue["Properties"]["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
            "maxReceiveCount": _lane_config(synthesized, lane).max_receive_count,
        }
        assert queue["Properties"]["QueueName"] == f"musetalk-{synthesized.config.stage}-{lane}"


def _suffix(s: Synthesized, title: str) -> str:
    """The lane queue's logical id is Queues<Title><hash>; exclude Queues<Title>DeadLetters."""
    ids = [
        k
        for k in resources(s.raw, "AWS::SQS::Queue")
        if k.startswith(f"Queues{title}") and "DeadLetters" not in k
    ]
    assert len(ids) == 1
    return ids[0].removeprefix(f"Queues{title}")


def test_visibility_timeout_covers_several_heartbeats(synthesized: Synthesized) -> None:
    config = synthesized.config
    for lane in Lane:
        title = lane.value.title()
        _, queue = one(
            synthesized.raw, "AWS::SQS::Queue", f"Queues{title}{_suffix(synthesized, title)}"
        )
        # Then the queue's timeout is the configured one, and a worker beats at least twice in it
        assert queue["Properties"]["VisibilityTimeout"] == config.visibility_timeout_seconds
        assert config.visibility_timeout_seconds >= 2 * config.heartbeat_seconds


def test_all_queues_are_encrypted_and_tls_only(synthesized: Synthesized) -> None:
    queues = resources(synthesized.raw, "AWS::SQS::Queue")
    # Given six queues (two lanes and webhook deliveries, each with its DLQ)
    assert len(queues) == 6
    for queue_id, queue in queues.items():
        # Then each is encrypted at rest
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, queue_id
        # And a queue policy denies any request not over TLS
        synthesized.template.has_resource_properties(
            "AWS::SQS::QueuePolicy",
            {
                "Queues": [{"Ref": queue_id}],
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
