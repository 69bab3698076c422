"""The one error shape callers see: `{"error": {"code", "message", "field"?}}`.

Handlers raise `ApiError`; the resolver turns it (and validation failures) into that JSON. Messages
are written for the caller and never include stack traces, URLs or stored values.
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict


class ApiErrorCode(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    UPLOAD_NOT_RECEIVED = "UPLOAD_NOT_RECEIVED"
    MEDIA_TOO_LARGE = "MEDIA_TOO_LARGE"
    AUDIO_TOO_LONG = "AUDIO_TOO_LONG"
    INVALID_MEDIA = "INVALID_MEDIA"  # an avatar file that cannot be the video or image it claims
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_IN_PROGRESS = "IDEMPOTENCY_IN_PROGRESS"
    JOB_ALREADY_FINAL = "JOB_ALREADY_FINAL"
    JOB_NOT_FINAL = "JOB_NOT_FINAL"  # redelivery: there is no final event to send yet
    NO_WEBHOOK = "NO_WEBHOOK"  # redelivery: the job has no webhook (or it was purged)
    EVENT_LOG_FULL = "EVENT_LOG_FULL"  # redelivery: the job's log holds MAX_JOB_EVENTS
    DEPENDENCY_UNAVAILABLE = "DEPENDENCY_UNAVAILABLE"
    INTERNAL = "INTERNAL"


class ApiError(Exception):
    """A failure the caller can act on; `field` names the offending input when there is one."""

    def __init__(
        self,
        status: HTTPStatus,
        code: ApiErrorCode,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.field)


def error_body(code: ApiErrorCode, message: str, field: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"code": code.value, "message": message}
    if field is not None:
        detail["field"] = field
    return {"error": detail}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(HTTPStatus.BAD_REQUEST, ApiErrorCode.INVALID_REQUEST, message, field=field)


def not_found(what: str, field: str | None = None) -> ApiError:
    """Another tenant's object and a missing one look the same: existence never leaks."""
    return ApiError(HTTPStatus.NOT_FOUND, ApiErrorCode.NOT_FOUND, f"{what} not found", field=field)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: ApiErrorCode
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """Documented in the OpenAPI document for every 4xx/5xx."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail
