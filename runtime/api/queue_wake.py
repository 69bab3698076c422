"""Keep the queues nothing polls awake for CloudWatch (called by the sweeper on each scheduled run).

SQS stops delivering a queue's metrics to CloudWatch once the queue has been inactive (no message,
no action) for six hours, and when an action activates it again its metrics arrive up to 15
minutes late. The batch lane scales to zero, so after a quiet night nothing polls its queue: the
morning's first job would wait up to 15 extra minutes before the scaling alarm sees it. Nothing
polls the undeliverable webhooks' queue either: its alarm would fire as late.
`GetQueueAttributes` activates a queue, so touching each of them on every sweep (every few
minutes) keeps its metrics flowing. The lane dead-letter queues need nothing: the dead-letter
Lambda's event source mapping polls them continuously.
Source: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/monitoring-using-cloudwatch.html
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.api.observability import logger
from runtime.api.settings import Settings

WEBHOOKS_UNDELIVERABLE = "webhooks-undeliverable"  # the name a touch reports that queue by

# The cheapest attribute to ask for: any GetQueueAttributes call activates the queue.
WAKE_ATTRIBUTE = "ApproximateNumberOfMessages"


@dataclass(frozen=True)
class WakeResult:
    touched: tuple[str, ...]
    failed: tuple[str, ...]


def unpolled_queues(settings: Settings) -> dict[str, str]:
    """The queues to keep awake, by name: each lane's (named by its lane), and the undeliverable
    webhooks' where it is deployed."""
    queues = {lane.value: url for lane, url in settings.queue_urls.items()}
    if settings.webhook_dead_letter_queue_url:
        queues[WEBHOOKS_UNDELIVERABLE] = settings.webhook_dead_letter_queue_url
    return queues


def touch_queues(sqs: Any, queue_urls: Mapping[str, str]) -> WakeResult:
    """Call GetQueueAttributes on every queue; a failure is logged, never raised, so the sweep
    goes on (the next run, minutes later, touches the queue again)."""
    touched: list[str] = []
    failed: list[str] = []
    for name, url in queue_urls.items():
        try:
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[WAKE_ATTRIBUTE])
        except (ClientError, BotoCoreError):
            logger.exception("could not touch the queue; next run retries", extra={"queue": name})
            failed.append(name)
            continue
        touched.append(name)
    return WakeResult(touched=tuple(touched), failed=tuple(failed))
