"""The REST API Lambda: one powertools resolver for every `/v1` route.

Before routing, `lambda_handler` settles what every request needs — a correlation id (the caller's
`X-Correlation-Id` when well-formed, else a new one; returned on every response), the body size
limit and the tenant (API Gateway's `apiKeyId` mapped through `MUSETALK_API_KEY_TENANTS`) — so no
route runs for an unknown caller or an oversized body. Routes are thin: parse, call the plain
function, shape the response. Every failure leaves as `{"error": {"code", "message", "field"?}}`.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import APIKey
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict

from runtime.api import avatars, jobs, uploads, webhook_deliveries
from runtime.api.body_guard import body_problem
from runtime.api.context import ApiContext
from runtime.api.cors import cors_headers
from runtime.api.errors import ApiError, ApiErrorCode, ErrorResponse, error_body
from runtime.api.models import (
    Avatar,
    AvatarList,
    CreateAvatarRequest,
    CreateUploadRequest,
    Job,
    JobAccepted,
    JobCancelled,
    JobEvents,
    JobList,
    SubmitJobRequest,
    UploadCreated,
    WebhookRedeliveryQueued,
)
from runtime.api.observability import logger, tracer
from runtime.api.settings import Settings
from runtime.common.jobs import JobStatus
from runtime.common.metrics import DIMENSION_LANE, DIMENSION_SERVICE, NAMESPACE, Metric

CORRELATION_HEADER = "X-Correlation-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
OPENAPI_PATH = "/v1/openapi.json"
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Printable ASCII without spaces: keys end up hashed, but they are echoed in nothing.
_IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_SAFE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

metrics = Metrics(namespace=NAMESPACE)
metrics.set_default_dimensions(**{DIMENSION_SERVICE: "api"})
app = APIGatewayRestResolver(enable_validation=True)

_ERROR_STATUSES = {
    400: "Invalid request; `field` names the input",
    401: "Missing API key",
    403: "Unknown API key",
    404: "Not found (or another tenant's: existence never leaks)",
    409: "Conflict (idempotency key reuse, upload not received, job already final)",
    413: "Body or media too large",
    415: "Request bodies must be application/json",
    422: "Media rejected (e.g. audio too long)",
    503: "A dependency of ours is unavailable; retry with the same Idempotency-Key",
}
_ERRORS: dict[int, OpenAPIResponse] = {
    status: {
        "description": description,
        "content": {content_types.APPLICATION_JSON: {"model": ErrorResponse}},
    }
    for status, description in _ERROR_STATUSES.items()
}


def _with_errors(status: int, description: str) -> dict[int, OpenAPIResponse]:
    return {status: {"description": description}, **_ERRORS}


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


def _tenant() -> str:
    return str(app.context["tenant"])


def _correlation_id() -> str:
    return str(app.context["correlation_id"])


def _json(
    status: HTTPStatus, model: BaseModel, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=model.model_dump(mode="json"),
        headers=headers,
    )


# --- uploads ---------------------------------------------------------------------------------


@app.post(
    "/v1/uploads",
    summary="Create a presigned upload",
    responses=_with_errors(201, "Created"),
)
def create_upload(request: Annotated[CreateUploadRequest, Body()]) -> Response[UploadCreated]:
    created = uploads.create_upload(runtime().ctx, _tenant(), request)
    logger.info("upload created", extra={"upload_id": created.upload_id, "kind": created.kind})
    return _json(HTTPStatus.CREATED, created)


# --- avatars ---------------------------------------------------------------------------------


@app.post(
    "/v1/avatars",
    summary="Register an avatar",
    responses=_with_errors(201, "Created"),
)
def create_avatar(request: Annotated[CreateAvatarRequest, Body()]) -> Response[Avatar]:
    record, created = avatars.register_avatar(
        runtime().ctx, _tenant(), request.upload_id, request.options
    )
    logger.info("avatar registered", extra={"avatar_id": record.avatar_id, "new": created})
    return _json(HTTPStatus.CREATED if created else HTTPStatus.OK, record.view())


@app.get("/v1/avatars", summary="List the tenant's avatars, newest first", responses=_ERRORS)
def list_avatars(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=1024)] = None,
) -> AvatarList:
    return avatars.list_avatars(runtime().ctx, _tenant(), limit=limit, next_token=next_token)


@app.get("/v1/avatars/<avatar_id>", summary="Get an avatar", responses=_ERRORS)
def get_avatar(avatar_id: Annotated[str, Path(pattern=_SAFE_ID_PATTERN)]) -> Avatar:
    return avatars.get_avatar(runtime().ctx, _tenant(), avatar_id, field="avatar_id").view()


# --- jobs ------------------------------------------------------------------------------------


@app.post("/v1/jobs", summary="Submit a job", responses=_with_errors(202, "Accepted"))
def submit_job(
    request: Annotated[SubmitJobRequest, Body()],
    idempotency_key: Annotated[
        str,
        Header(
            alias=IDEMPOTENCY_HEADER,
            pattern=_IDEMPOTENCY_KEY_PATTERN,
            description="Same key + same body = same job; same key + other body = 409.",
        ),
    ],
) -> Response[JobAccepted]:
    accepted = JobAccepted.model_validate(
        runtime().submit(
            command=SubmitCommand(
                tenant=_tenant(),
                idempotency_key=idempotency_key,
                correlation_id=_correlation_id(),
                body=request.model_dump(mode="json"),
            )
        )
    )
    # One job per invocation, so the lane dimension applies to exactly this metric.
    metrics.add_dimension(name=DIMENSION_LANE, value=request.lane.value)
    metrics.add_metric(name=Metric.JOBS_ACCEPTED, unit=MetricUnit.Count, value=1)
    return _json(HTTPStatus.ACCEPTED, accepted, headers={"Location": accepted.status_url})


@app.get("/v1/jobs", summary="List the tenant's jobs, newest first", responses=_ERRORS)
def list_jobs(
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=1024)] = None,
) -> JobList:
    return jobs.list_jobs(
        runtime().ctx, _tenant(), status=status, limit=limit, next_token=next_token
    )


@app.get("/v1/jobs/<job_id>", summary="Job status", responses=_ERRORS)
def get_job(job_id: Annotated[str, Path(pattern=_SAFE_ID_PATTERN)]) -> Job:
    return jobs.get_job(runtime().ctx, _tenant(), job_id)


@app.get(
    "/v1/jobs/<job_id>/events",
    summary="The job's event log: status changes and webhook attempts, oldest first",
    responses=_ERRORS,
)
def get_job_events(job_id: Annotated[str, Path(pattern=_SAFE_ID_PATTERN)]) -> JobEvents:
    return jobs.job_events(runtime().ctx, _tenant(), job_id)


@app.post(
    "/v1/jobs/<job_id>/webhook/redeliver",
    summary="Send the job's final event to its webhook again (signed, same webhook-id)",
    responses=_with_errors(202, "Redelivery queued"),
)
def redeliver_webhook(
    job_id: Annotated[str, Path(pattern=_SAFE_ID_PATTERN)],
) -> Response[WebhookRedeliveryQueued]:
    queued = webhook_deliveries.request_redelivery(runtime().ctx, _tenant(), job_id)
    return _json(HTTPStatus.ACCEPTED, queued)


@app.delete(
    "/v1/jobs/<job_id>",
    summary="Cancel a job (purge=true also erases its media)",
    responses=_ERRORS,
)
def cancel_job(
    job_id: Annotated[str, Path(pattern=_SAFE_ID_PATTERN)],
    purge: Annotated[bool, Query()] = False,
    reason: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=jobs.CANCEL_REASON_MAX,
            description="Why: kept in the job's error message (printable text).",
        ),
    ] = None,
) -> JobCancelled:
    key_id = app.context.get("api_key_id")
    return jobs.cancel_job(
        runtime().ctx,
        _tenant(),
        job_id,
        purge=purge,
        by=f"API key {key_id}" if key_id else None,
        reason=reason,
    )


# --- the document ----------------------------------------------------------------------------


def openapi_document() -> str:
    return app.get_openapi_json_schema(
        title="MuseTalk job API",
        version="1.0.0",
        description="Upload media, register avatars, submit lip-sync jobs and read their status.",
        # API Gateway checks the key (usage plan); the key's id maps to the caller's tenant.
        security_schemes={"apiKey": APIKey.model_validate({"in": "header", "name": "x-api-key"})},
        security=[{"apiKey": []}],
    )


@app.get(OPENAPI_PATH, include_in_schema=False)
def get_openapi() -> Response[str]:
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_document()
    )


# --- errors ----------------------------------------------------------------------------------


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


# --- entry point -----------------------------------------------------------------------------


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
