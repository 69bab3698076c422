"""Keep every lane queue awake for CloudWatch (called by the sweeper on each scheduled run).

SQS stops delivering a queue's metrics to CloudWatch once the queue has been inactive (no message,
no action) for six hours, and when an action activates it again its metrics arrive up to 15
minutes late. The batch lane scales to zero, so after a quiet night nothing polls its queue: the
morning's first job would wait up to 15 extra minutes before the scaling alarm sees it.
`GetQueueAttributes` activates a queue, so touching each lane queue on every sweep (every few
minutes) keeps its metrics flowing. The dead-letter queues need nothing: the dead-letter Lambda's
event source mapping polls them continuously.
Source: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/monitoring-using-cloudwatch.html
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.api.observability import logger
from runtime.common.names import Lane

# The cheapest attribute to ask for: any GetQueueAttributes call activates the queue.
WAKE_ATTRIBUTE = "ApproximateNumberOfMessages"


@dataclass(frozen=True)
class WakeResult:
    touched: tuple[Lane, ...]
    failed: tuple[Lane, ...]


def touch_queues(sqs: Any, queue_urls: Mapping[Lane, str]) -> WakeResult:
    """Call GetQueueAttributes on every lane queue; a failure is logged, never raised, so the
    sweep goes on (the next run, minutes later, touches the queue again)."""
    touched: list[Lane] = []
    failed: list[Lane] = []
    for lane, url in queue_urls.items():
        try:
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[WAKE_ATTRIBUTE])
        except (ClientError, BotoCoreError):
            logger.exception(
                "could not touch the lane queue; next run retries", extra={"lane": lane.value}
            )
            failed.append(lane)
            continue
        touched.append(lane)
    return WakeResult(touched=tuple(touched), failed=tuple(failed))
