"""The completion event: built from the final job record, published to SNS, and POSTed to the
job's webhook when it has one."""

from __future__ import annotations

from typing import Any

from runtime.common.events import completion_event
from runtime.common.jobs import (
    SNS_ATTRIBUTE_STATUS,
    SNS_ATTRIBUTE_TENANT,
)
from runtime.common.records import JobRecord
from runtime.worker.job_store import JobStore
from runtime.worker.telemetry import logger
from runtime.worker.webhooks import WebhookSender


class Notifier:
    def __init__(
        self, *, sns: Any, topic_arn: str, store: JobStore, webhooks: WebhookSender | None
    ) -> None:
        self._sns = sns
        self._topic_arn = topic_arn
        self._store = store
        self._webhooks = webhooks

    def job_finished(self, record: JobRecord) -> None:
        """Publish the final record's event; clearing `completion_pending` after it is what lets a
        redelivery finish the job if this worker stops in between."""
        event = completion_event(record)
        self._sns.publish(
            TopicArn=self._topic_arn,
            Message=event.model_dump_json(),
            MessageAttributes={
                SNS_ATTRIBUTE_STATUS: {"DataType": "String", "StringValue": event.status.value},
                SNS_ATTRIBUTE_TENANT: {"DataType": "String", "StringValue": event.tenant},
            },
        )
        self._store.mark_completion_sent(record.job_id)
        if record.webhook_url:
            if self._webhooks is None:
                logger.warning("job has a webhook but no signing secret is configured; not sent")
            else:
                self._webhooks.submit(record.webhook_url, event)
