"""Lambda entry point on the webhook deliveries queue (`runtime.api.webhook_deliveries`): the
signing key read per batch, one attempt per record, as a partial batch response.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from runtime.api.context import ApiContext
from runtime.api.observability import logger, tracer
from runtime.api.settings import Settings
from runtime.api.webhook_deliveries import deliver
from runtime.common.events import WebhookDelivery
from runtime.common.webhook_signing import signing_key

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@functools.cache
def _context() -> ApiContext:
    return ApiContext.from_settings(Settings.from_env())


@functools.cache
def _secrets() -> Any:
    return boto3.client("secretsmanager")


def _signing_key(ctx: ApiContext) -> bytes:
    """Read per batch (not cached for the container's life), so a rotated secret applies."""
    if ctx.settings.webhook_secret_arn is None:
        raise RuntimeError("MUSETALK_WEBHOOK_SECRET_ARN is not set")
    secret = _secrets().get_secret_value(SecretId=ctx.settings.webhook_secret_arn)
    return signing_key(str(secret["SecretString"]).strip())


def _handle_record(record: SQSRecord, key: bytes) -> None:
    try:
        delivery = WebhookDelivery.model_validate_json(record.body)
    except ValidationError:
        logger.error("unreadable webhook delivery dropped", extra={"message_id": record.message_id})
        return
    attempt = int(record.attributes.approximate_receive_count)
    deliver(_context(), key, delivery, attempt)


@logger.inject_lambda_context(clear_state=True, log_event=False)  # never the event
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    key = _signing_key(_context())
    return dict(
        process_partial_response(
            event=event,
            record_handler=lambda record: _handle_record(record, key),
            processor=processor,
            context=context,
        )
    )
