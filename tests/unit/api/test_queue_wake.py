"""The sweeper's keep-awake touch: one GetQueueAttributes per lane queue, and a queue it cannot
touch is logged without stopping the others (runtime/api/queue_wake.py)."""

from __future__ import annotations

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.stub import Stubber

from runtime.api.queue_wake import WAKE_ATTRIBUTE, touch_queues
from runtime.common.names import Lane

URLS = {
    Lane.INTERACTIVE: "https://sqs.us-east-1.amazonaws.com/123456789012/interactive",
    Lane.BATCH: "https://sqs.us-east-1.amazonaws.com/123456789012/batch",
}


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
    assert result.touched == (Lane.INTERACTIVE, Lane.BATCH)
    assert result.failed == ()


def test_a_queue_that_cannot_be_touched_is_logged_and_the_next_one_still_is() -> None:
    sqs = _client()
    with Stubber(sqs) as stub:
        stub.add_client_error(
            "get_queue_attributes",
            service_error_code="AccessDenied",
            expected_params={
                "QueueUrl": URLS[Lane.INTERACTIVE],
                "AttributeNames": [WAKE_ATTRIBUTE],
            },
        )
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {WAKE_ATTRIBUTE: "3"}},
            {"QueueUrl": URLS[Lane.BATCH], "AttributeNames": [WAKE_ATTRIBUTE]},
        )
        result = touch_queues(sqs, URLS)
        stub.assert_no_pending_responses()
    assert result.touched == (Lane.BATCH,)
    assert result.failed == (Lane.INTERACTIVE,)
