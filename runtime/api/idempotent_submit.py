"""Idempotent job submission: Powertools idempotency (its own DynamoDB table) around `submit_job`.

The idempotency key is (tenant, Idempotency-Key) and the payload is the validated body, so a retry
with an equal body replays the first answer and another body is a 409. `runtime()` holds what a
Lambda container builds once: the API context, the idempotency config and the guarded submit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from pydantic import BaseModel, ConfigDict

from runtime.api import jobs
from runtime.api.context import ApiContext
from runtime.api.models import SubmitJobRequest
from runtime.api.settings import Settings

IDEMPOTENCY_HEADER = "Idempotency-Key"


class SubmitCommand(BaseModel):
    """What the idempotency layer hashes: the key is (tenant, Idempotency-Key), the payload is the
    validated body, so a reformatted but equal body is the same request."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    idempotency_key: str
    correlation_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Runtime:
    ctx: ApiContext
    idempotency: IdempotencyConfig
    submit: Callable[..., dict[str, Any]]


@functools.cache
def runtime() -> Runtime:
    """Built on first use (not import), so a cold start reads the environment once."""
    return build_runtime()


def build_runtime() -> Runtime:
    """Settings, clients and the idempotent submit; one per Lambda container."""
    ctx = ApiContext.from_settings(Settings.from_env())
    config = IdempotencyConfig(
        event_key_jmespath="[tenant, idempotency_key]",
        payload_validation_jmespath="body",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=24 * 3600,
    )
    store = DynamoDBPersistenceLayer(table_name=ctx.settings.idempotency_table)

    def submit(command: SubmitCommand) -> dict[str, Any]:
        accepted = jobs.submit_job(
            ctx,
            tenant=command.tenant,
            idempotency_key=command.idempotency_key,
            request=SubmitJobRequest.model_validate(command.body),
            correlation_id=command.correlation_id,
        )
        return accepted.model_dump(mode="json")

    guarded = idempotent_function(
        data_keyword_argument="command", persistence_store=store, config=config
    )(submit)
    return Runtime(ctx=ctx, idempotency=config, submit=guarded)
