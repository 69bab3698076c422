"""SQS: one queue per lane, each with its own dead-letter queue.

The visibility timeout is a few worker heartbeats: the worker extends visibility every heartbeat
while it renders, so a crashed worker's message reappears within one timeout. After
`max_receive_count` deliveries a message moves to the lane's DLQ, where the dead-letter handler
marks the job FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from runtime.common.events import WEBHOOK_MAX_RECEIVES
from runtime.common.names import Lane, ResourceNames

_MAX_RETENTION = Duration.days(14)
_LONG_POLL = Duration.seconds(20)


@dataclass(frozen=True, kw_only=True)
class LaneQueueSettings:
    max_receive_count: int


class JobQueues(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        visibility_timeout_seconds: int,
        dead_letter_visibility_timeout_seconds: int,
        lanes: dict[Lane, LaneQueueSettings],
    ) -> None:
        super().__init__(scope, construct_id)
        self._queues: dict[Lane, sqs.Queue] = {}
        self._dead_letter_queues: dict[Lane, sqs.Queue] = {}

        for lane, settings in lanes.items():
            title = lane.value.title()
            dlq = sqs.Queue(
                self,
                f"{title}DeadLetters",
                queue_name=names.dead_letter_queue(lane),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                retention_period=_MAX_RETENTION,
                # Consumed by the dead-letter Lambda: must outlast its timeout.
                visibility_timeout=Duration.seconds(dead_letter_visibility_timeout_seconds),
            )
            self._dead_letter_queues[lane] = dlq
            self._queues[lane] = sqs.Queue(
                self,
                title,
                queue_name=names.queue(lane),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                visibility_timeout=Duration.seconds(visibility_timeout_seconds),
                receive_message_wait_time=_LONG_POLL,
                retention_period=_MAX_RETENTION,
                dead_letter_queue=sqs.DeadLetterQueue(
                    queue=dlq, max_receive_count=settings.max_receive_count
                ),
            )

    @property
    def lanes(self) -> tuple[Lane, ...]:
        return tuple(self._queues)

    def queue(self, lane: Lane) -> sqs.Queue:
        return self._queues[lane]

    def dead_letter_queue(self, lane: Lane) -> sqs.Queue:
        return self._dead_letter_queues[lane]


class WebhookQueues(Construct):
    """Webhook deliveries (redeliveries and what the worker gave up on), one attempt per receive
    by the webhook-deliveries Lambda; after `WEBHOOK_MAX_RECEIVES` failed attempts a delivery
    moves to its own dead-letter queue, which the stack alarms on."""

    def __init__(
        self, scope: Construct, construct_id: str, *, names: ResourceNames, visibility_seconds: int
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "Undeliverable",
            queue_name=names.webhook_dead_letter_queue,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=_MAX_RETENTION,
        )
        self.queue = sqs.Queue(
            self,
            "Deliveries",
            queue_name=names.webhook_queue,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # Also the backoff between attempts: a failed attempt reappears after it.
            visibility_timeout=Duration.seconds(visibility_seconds),
            retention_period=_MAX_RETENTION,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=WEBHOOK_MAX_RECEIVES
            ),
        )
