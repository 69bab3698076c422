"""Lambda entry point of the REST API: one Powertools resolver for every `/v1` route.

Before routing, `lambda_handler` settles what every request needs — a correlation id (the caller's
`X-Correlation-Id` when well-formed, else a new one; returned on every response), the body size
limit and the tenant (API Gateway's `apiKeyId` mapped through `MUSETALK_API_KEY_TENANTS`) — so no
route runs for an unknown caller or an oversized body. Routes (`runtime.api.routes`) are thin:
parse, call the plain function, shape the response; failures are mapped in
`runtime.api.error_responses`.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.api import error_responses as error_responses  # registers the error handlers
from runtime.api.body_guard import body_problem
from runtime.api.cors import cors_headers
from runtime.api.errors import ApiErrorCode, error_body
from runtime.api.idempotent_submit import runtime
from runtime.api.observability import logger, tracer
from runtime.api.resolver import app, metrics
from runtime.api.routes import OPENAPI_PATH
from runtime.common.metrics import Metric

CORRELATION_HEADER = "X-Correlation-Id"
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@logger.inject_lambda_context(clear_state=True, log_event=False)  # events carry webhook URLs
@tracer.capture_lambda_handler(capture_response=False)  # responses hold presigned URLs
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return _handle(event, context)
    finally:
        # Flush only when there is something (reads emit no metric): `log_metrics` would warn on
        # every read.
        if metrics.metric_set:
            metrics.flush_metrics()


def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    correlation_id = _header(event, CORRELATION_HEADER)
    if not _CORRELATION_ID.fullmatch(correlation_id):
        correlation_id = str(uuid.uuid4())
    logger.set_correlation_id(correlation_id)
    response = _gate(event, context, correlation_id)
    status = int(response.get("statusCode", 500))
    is_submission = event.get("httpMethod") == "POST" and _route_of(event) == "/v1/jobs"
    if is_submission and HTTPStatus.BAD_REQUEST <= status < HTTPStatus.INTERNAL_SERVER_ERROR:
        metrics.add_metric(name=Metric.JOBS_REJECTED, unit=MetricUnit.Count, value=1)
    # The route pattern, not the path: ids stay out of the access line, and it aggregates.
    logger.info(
        "request handled",
        extra={
            "method": event.get("httpMethod"),
            "route": _route_of(event),
            "status": status,
        },
    )
    response.setdefault("headers", {})
    response["headers"] = (
        dict(response["headers"] or {})
        | {CORRELATION_HEADER: correlation_id}
        | cors_headers(_header(event, "Origin"), runtime().ctx.settings.cors_allowed_origins)
    )
    if response.get("multiValueHeaders"):
        response["multiValueHeaders"][CORRELATION_HEADER] = [correlation_id]
    return response


def _gate(event: dict[str, Any], context: LambdaContext, correlation_id: str) -> dict[str, Any]:
    """Reject what no route should see, then resolve."""
    is_document = event.get("httpMethod") == "GET" and str(event.get("path", "")).endswith(
        OPENAPI_PATH
    )
    settings = runtime().ctx.settings
    identity = (event.get("requestContext") or {}).get("identity") or {}
    api_key_id = identity.get("apiKeyId")
    tenant = settings.api_key_tenants.get(api_key_id) if isinstance(api_key_id, str) else None
    if tenant is None and not is_document:
        if not api_key_id:
            return _early(
                HTTPStatus.UNAUTHORIZED,
                ApiErrorCode.UNAUTHENTICATED,
                "an API key is required",
                None,
            )
        return _early(HTTPStatus.FORBIDDEN, ApiErrorCode.FORBIDDEN, "unknown API key", None)
    if _body_bytes(event) > settings.limits.max_request_body_bytes:
        return _early(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            ApiErrorCode.BODY_TOO_LARGE,
            f"request body exceeds {settings.limits.max_request_body_bytes} bytes",
            "body",
        )
    content_type = _header(event, "content-type")
    if event.get("body") and content_type and not content_type.startswith("application/json"):
        return _early(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            ApiErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "request bodies must be application/json",
            "Content-Type",
        )
    problem = body_problem(event)
    if problem is not None:
        return _early(HTTPStatus.BAD_REQUEST, ApiErrorCode.INVALID_REQUEST, problem, "body")
    if tenant is not None:
        logger.append_keys(tenant=tenant)
    runtime().idempotency.register_lambda_context(context)
    app.append_context(tenant=tenant, correlation_id=correlation_id, api_key_id=api_key_id)
    return app.resolve(event, context)


def _header(event: Mapping[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if str(key).lower() == name.lower():
            return str(value).strip()
    return ""


def _route_of(event: Mapping[str, Any]) -> str:
    path = str(event.get("path", ""))
    if path in _FIXED_ROUTES:
        return path
    for pattern, route in _ID_ROUTES:
        if pattern.fullmatch(path):
            return route
    return "unknown"


_FIXED_ROUTES = frozenset({"/v1/jobs", "/v1/avatars", "/v1/uploads", OPENAPI_PATH})
_ID_ROUTES = [
    (re.compile(r"/v1/jobs/[^/]+/events"), "/v1/jobs/{job_id}/events"),
    (re.compile(r"/v1/jobs/[^/]+/webhook/redeliver"), "/v1/jobs/{job_id}/webhook/redeliver"),
    (re.compile(r"/v1/jobs/[^/]+"), "/v1/jobs/{job_id}"),
    (re.compile(r"/v1/avatars/[^/]+"), "/v1/avatars/{avatar_id}"),
]


def _body_bytes(event: Mapping[str, Any]) -> int:
    body = event.get("body")
    if not isinstance(body, str):
        return 0
    if event.get("isBase64Encoded"):
        try:
            return len(base64.b64decode(body, validate=False))
        except ValueError:
            return len(body)
    return len(body.encode("utf-8", "surrogatepass"))  # lone surrogates: counted, not a 500


def _early(
    status: HTTPStatus, code: ApiErrorCode, message: str, field: str | None
) -> dict[str, Any]:
    logger.info("request rejected", extra={"code": code.value})
    return {
        "statusCode": status.value,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps(error_body(code, message, field)),
        "isBase64Encoded": False,
    }
