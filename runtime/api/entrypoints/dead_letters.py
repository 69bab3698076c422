"""Lambda entry point on the lane DLQs (`runtime.api.dead_letters`): one record at a time,
as a partial batch response.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from runtime.api.context import ApiContext
from runtime.api.dead_letters import fail_exhausted_job
from runtime.api.observability import logger, tracer
from runtime.api.settings import Settings
from runtime.common.jobs import JobMessage

processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def _context() -> ApiContext:
    return ApiContext.from_settings(Settings.from_env())


def _handle_record(record: SQSRecord) -> None:
    try:
        message = JobMessage.model_validate_json(record.body)
    except ValidationError:
        # Nothing identifies a job in it, so nothing can be failed; keeping it would only
        # redeliver it forever. Logged by id (never by content) for an operator to inspect.
        logger.error("unreadable dead letter dropped", extra={"message_id": record.message_id})
        return
    logger.set_correlation_id(message.correlation_id)
    fail_exhausted_job(_context(), message)


@logger.inject_lambda_context(clear_state=True, log_event=False)  # never the event
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(
            event=event, record_handler=_handle_record, processor=processor, context=context
        )
    )
