"""The REST API's error mapping: every failure leaves as `{"error": {"code", "message", "field"?}}`.

The handlers are registered on the shared resolver (`runtime.api.resolver`) on import: the
caller's mistakes name their field, the idempotency layer's answers are 409s about the
Idempotency-Key, and a failing AWS dependency is a 503 the caller retries with the same key.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from botocore.exceptions import BotoCoreError, ClientError

from runtime.api.errors import ApiError, ApiErrorCode, error_body
from runtime.api.idempotent_submit import IDEMPOTENCY_HEADER
from runtime.api.observability import logger
from runtime.api.resolver import app


def _error(
    status: HTTPStatus, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers=headers,
    )


@app.exception_handler(ApiError)
def _api_error(error: ApiError) -> Response[Any]:
    logger.info("request rejected", extra={"code": error.code.value, "field": error.field})
    return _error(error.status, error.body(), error.headers)


@app.exception_handler(RequestValidationError)
def _validation_error(error: RequestValidationError) -> Response[Any]:
    first = error.errors()[0] if error.errors() else {"loc": ("body",), "msg": "invalid request"}
    field = _field_of(tuple(first.get("loc", ())))
    message = f"{field}: {first.get('msg', 'invalid value')}"
    logger.info("request rejected", extra={"code": "INVALID_REQUEST", "field": field})
    return _error(HTTPStatus.BAD_REQUEST, error_body(ApiErrorCode.INVALID_REQUEST, message, field))


def _field_of(loc: tuple[Any, ...]) -> str:
    """('body', 'options', 'bbox_shift') -> 'options.bbox_shift'; ('header', 'idempotency-key')
    -> 'Idempotency-Key'; a whole-body problem (bad JSON) -> 'body'."""
    if not loc:
        return "body"
    where, rest = loc[0], [str(part) for part in loc[1:] if not isinstance(part, int)]
    if where == "header" and rest and rest[0].lower() == IDEMPOTENCY_HEADER.lower():
        return IDEMPOTENCY_HEADER
    if where == "body" and rest and rest[0] == "request":
        rest = rest[1:]  # the body parameter's own name is not part of the caller's document
    return ".".join(rest) if rest else str(where)


def _idempotency_conflict(
    code: ApiErrorCode, message: str, headers: dict[str, str] | None = None
) -> Response[Any]:
    """A 409 about the request's Idempotency-Key (the field the caller should look at)."""
    return _error(
        HTTPStatus.CONFLICT, error_body(code, message, IDEMPOTENCY_HEADER), headers=headers
    )


@app.exception_handler(IdempotencyValidationError)
def _idempotency_mismatch(_: IdempotencyValidationError) -> Response[Any]:
    return _idempotency_conflict(
        ApiErrorCode.IDEMPOTENCY_KEY_REUSED,
        "this Idempotency-Key was already used with a different request body",
    )


@app.exception_handler(IdempotencyAlreadyInProgressError)
def _idempotency_in_progress(_: IdempotencyAlreadyInProgressError) -> Response[Any]:
    return _idempotency_conflict(
        ApiErrorCode.IDEMPOTENCY_IN_PROGRESS,
        "a request with this Idempotency-Key is still being processed; retry shortly",
        headers={"Retry-After": "1"},
    )


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(_: RequestUnsupportedContentType) -> Response[Any]:
    return _error(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        error_body(
            ApiErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "request bodies must be application/json",
            "Content-Type",
        ),
    )


@app.not_found
def _not_found(_: NotFoundError) -> Response[Any]:
    return _error(HTTPStatus.NOT_FOUND, error_body(ApiErrorCode.NOT_FOUND, "no such route"))


@app.exception_handler([ClientError, BotoCoreError, IdempotencyPersistenceLayerError])
def _dependency_failure(error: Exception) -> Response[Any]:
    # Our own dependency failed (never the caller's input): 503 so clients retry with their key.
    logger.exception("AWS dependency failed")
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE,
        error_body(ApiErrorCode.DEPENDENCY_UNAVAILABLE, "a dependency is unavailable; retry"),
        headers={"Retry-After": "2"},
    )


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return _error(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        error_body(ApiErrorCode.INTERNAL, "internal error; quote the X-Correlation-Id header"),
    )
