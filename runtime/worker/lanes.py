"""Pulling job messages from the lanes' SQS queues in priority order.

Each poll first asks every lane in priority order without waiting, then long-polls the
highest-priority lane. So an interactive message is taken before any batch message that is
waiting, and one that arrives while the worker is idle is received at once; a batch job that is
running is never interrupted, so an interactive job waits at most for the batch job in progress
(plus one short poll) on a worker that serves both lanes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.common.names import Lane


@dataclass(frozen=True, kw_only=True)
class Delivery:
    lane: Lane
    queue_url: str
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


class LanePoller:
    def __init__(
        self,
        sqs: Any,
        lanes: tuple[tuple[Lane, str], ...],
        *,
        wait_seconds: int,
        visibility_timeout_seconds: int,
    ) -> None:
        self._sqs = sqs
        self._lanes = lanes
        self._wait_seconds = wait_seconds
        # Set on receive too, so the heartbeat's interval always relates to the same timeout.
        self._visibility_timeout = visibility_timeout_seconds
        self.reachable = False  # readiness: the last receive call succeeded

    def next(self) -> Delivery | None:
        for lane, url in self._lanes:
            delivery = self._receive(lane, url, wait_seconds=0)
            if delivery is not None:
                return delivery
        lane, url = self._lanes[0]
        return self._receive(lane, url, wait_seconds=self._wait_seconds)

    def delete(self, delivery: Delivery) -> None:
        self._sqs.delete_message(QueueUrl=delivery.queue_url, ReceiptHandle=delivery.receipt_handle)

    def resend(self, delivery: Delivery, delay_seconds: int) -> None:
        """Put the job back as a new message due in `delay_seconds`, then drop this one.

        Unlike a visibility change this does not use up a receive (a wait is not a failure, so
        it must not move the job towards the DLQ). A crash between the two calls leaves two
        messages for one job; the lease drops the second as a duplicate.
        """
        self._sqs.send_message(
            QueueUrl=delivery.queue_url,
            MessageBody=delivery.body,
            DelaySeconds=max(0, min(int(delay_seconds), 900)),
        )
        self.delete(delivery)

    def set_visibility(self, delivery: Delivery, seconds: int) -> None:
        self._sqs.change_message_visibility(
            QueueUrl=delivery.queue_url,
            ReceiptHandle=delivery.receipt_handle,
            VisibilityTimeout=max(0, min(int(seconds), 43_200)),
        )

    def _receive(self, lane: Lane, url: str, *, wait_seconds: int) -> Delivery | None:
        try:
            response = self._sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=1,  # one job at a time per GPU
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=self._visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except Exception:
            self.reachable = False
            raise
        self.reachable = True
        messages = response.get("Messages", [])
        if not messages:
            return None
        message = messages[0]
        return Delivery(
            lane=lane,
            queue_url=url,
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=message["Body"],
            receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
        )
