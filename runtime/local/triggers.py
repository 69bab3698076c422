"""The stack's two non-HTTP Lambda triggers, run in the local API process.

On AWS an EventBridge schedule runs the sweeper (re-sends jobs whose queue message was never
confirmed) and an SQS event source feeds the lane dead-letter queues to the dead-letter handler
(fails jobs whose message exhausted its deliveries, and publishes their completion event), and
another feeds the webhook deliveries queue to the webhook-deliveries handler; S3 runs the
buckets' lifecycle rules. Locally one thread does all of it, through the same handlers and the
same event shapes (and the same lifecycle rules, `runtime.local.lifecycle`), so a job accepted
locally is never silently lost either, and what expires on AWS expires locally too.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from runtime.local.gateway import LocalLambdaContext
from runtime.local.lifecycle import apply_expiry
from runtime.local.resources import LOCAL_REGION

SWEEP_INTERVAL_SECONDS = 60
DEAD_LETTER_BATCH_SIZE = 10
LAMBDA_TIMEOUT_SECONDS = 60

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _context(name: str) -> LocalLambdaContext:
    return LocalLambdaContext(
        aws_request_id=str(uuid.uuid4()),
        function_name=f"musetalk-local-{name}",
        deadline=time.monotonic() + LAMBDA_TIMEOUT_SECONDS,
    )


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event an SQS event source mapping hands a Lambda for `messages`."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": LOCAL_REGION,
            }
            for message in messages
        ]
    }


def drain_dead_letters(sqs: Any, queue_url: str, handler: Handler, lock: threading.Lock) -> int:
    """One poll of a dead-letter queue: hand what is there to `handler`, delete what it handled
    (everything but its `batchItemFailures`, as a report_batch_item_failures mapping does)."""
    answer = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=DEAD_LETTER_BATCH_SIZE,
        WaitTimeSeconds=1,
        AttributeNames=["All"],
    )
    messages = answer.get("Messages", [])
    if not messages:
        return 0
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    with lock:
        result = handler(sqs_event(messages, arn), _context("dead-letters"))
    failed = {item["itemIdentifier"] for item in result.get("batchItemFailures", [])}
    handled = [m for m in messages if m["MessageId"] not in failed]
    for message in handled:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return len(handled)


class LocalTriggers(threading.Thread):
    """Runs the sweeper and the buckets' lifecycle rules every `SWEEP_INTERVAL_SECONDS` and
    polls the dead-letter queues."""

    def __init__(
        self,
        *,
        sqs: Any,
        dead_letter_queue_urls: list[str],
        sweeper: Handler,
        dead_letters: Handler,
        lock: threading.Lock,
        webhook_queue_url: str | None = None,
        webhook_deliveries: Handler | None = None,
        s3: Any = None,
        lifecycle_buckets: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name="local-triggers", daemon=True)
        self._sqs = sqs
        self._queues = dead_letter_queue_urls
        self._sweeper = sweeper
        self._dead_letters = dead_letters
        self._webhook_queue_url = webhook_queue_url
        self._webhook_deliveries = webhook_deliveries
        self._lock = lock
        self._s3 = s3
        self._lifecycle_buckets = lifecycle_buckets
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        next_sweep = time.monotonic() + SWEEP_INTERVAL_SECONDS
        while not self._stop.is_set():
            try:
                for queue_url in self._queues:
                    drain_dead_letters(self._sqs, queue_url, self._dead_letters, self._lock)
                if self._webhook_queue_url and self._webhook_deliveries:
                    drain_dead_letters(
                        self._sqs, self._webhook_queue_url, self._webhook_deliveries, self._lock
                    )
                if time.monotonic() >= next_sweep:
                    with self._lock:
                        self._sweeper({}, _context("sweeper"))
                    for bucket in self._lifecycle_buckets:
                        apply_expiry(self._s3, bucket, datetime.now(UTC))
                    next_sweep = time.monotonic() + SWEEP_INTERVAL_SECONDS
            except Exception as error:  # a failed invocation is retried next round, as on AWS
                print(f"local triggers: {type(error).__name__}: {error}", flush=True)
                self._stop.wait(1)
