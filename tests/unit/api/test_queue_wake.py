"""The sweeper's keep-awake touch: one GetQueueAttributes per queue nothing polls (the lanes', the
undeliverable webhooks'), and a queue it cannot touch is logged without stopping the others
(runtime/api/queue_wake.py)."""

from __future__ import annotations

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.stub import Stubber

from runtime.api.queue_wake import (
    WAKE_ATTRIBUTE,
    WEBHOOKS_UNDELIVERABLE,
    touch_queues,
    unpolled_queues,
)
from runtime.api.settings import Settings
from runtime.common.names import EnvVar, Lane
from tests.unit.api.test_settings import BASE

URLS = {
    Lane.INTERACTIVE.value: "https://sqs.us-east-1.amazonaws.com/123456789012/interactive",
    Lane.BATCH.value: "https://sqs.us-east-1.amazonaws.com/123456789012/batch",
}
DEAD_WEBHOOKS = "https://sqs.us-east-1.amazonaws.com/123456789012/webhooks-dlq"


def _client() -> object:
    # Stubbed: nothing is sent, so nothing is signed
    return boto3.client("sqs", region_name="us-east-1", config=Config(signature_version=UNSIGNED))


def test_every_lane_queue_gets_one_cheap_get_queue_attributes() -> None:
    sqs = _client()
    with Stubber(sqs) as stub:
        for url in URLS.values():
            stub.add_response(
                "get_queue_attributes",
                {"Attributes": {WAKE_ATTRIBUTE: "0"}},
                {"QueueUrl": url, "AttributeNames": [WAKE_ATTRIBUTE]},
            )
        result = touch_queues(sqs, URLS)
        stub.assert_no_pending_responses()
    assert result.touched == (Lane.INTERACTIVE.value, Lane.BATCH.value)
    assert result.failed == ()


def test_a_queue_that_cannot_be_touched_is_logged_and_the_next_one_still_is() -> None:
    sqs = _client()
    with Stubber(sqs) as stub:
        stub.add_client_error(
            "get_queue_attributes",
            service_error_code="AccessDenied",
            expected_params={
                "QueueUrl": URLS[Lane.INTERACTIVE.value],
                "AttributeNames": [WAKE_ATTRIBUTE],
            },
        )
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {WAKE_ATTRIBUTE: "3"}},
            {"QueueUrl": URLS[Lane.BATCH.value], "AttributeNames": [WAKE_ATTRIBUTE]},
        )
        result = touch_queues(sqs, URLS)
        stub.assert_no_pending_responses()
    assert result.touched == (Lane.BATCH.value,)
    assert result.failed == (Lane.INTERACTIVE.value,)


def test_the_undeliverable_webhooks_queue_is_kept_awake_where_it_is_deployed() -> None:
    # Nothing polls it, and its alarm reads its depth: asleep, the alarm would fire 15 min late
    deployed = Settings.from_env(
        {**BASE, EnvVar.WEBHOOK_DEAD_LETTER_QUEUE_URL.value: DEAD_WEBHOOKS}
    )
    lanes = {Lane.INTERACTIVE.value: "https://sqs/i", Lane.BATCH.value: "https://sqs/b"}
    assert unpolled_queues(deployed) == {**lanes, WEBHOOKS_UNDELIVERABLE: DEAD_WEBHOOKS}
    assert unpolled_queues(Settings.from_env(BASE)) == lanes
