"""The REST API's routes: parse, call the plain function, shape the response.

Each route is registered on the shared resolver (`runtime.api.resolver`); its OpenAPI document
(`openapi_document`) is generated from these signatures and committed as docs/openapi.json.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.models import APIKey
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel

from runtime.api import avatars, cancellation, jobs, uploads, webhook_deliveries
from runtime.api.errors import ErrorResponse
from runtime.api.idempotent_submit import IDEMPOTENCY_HEADER, SubmitCommand, runtime
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
from runtime.api.observability import logger
from runtime.api.resolver import app, correlation_id, metrics, tenant
from runtime.common.jobs import JobStatus
from runtime.common.metrics import DIMENSION_LANE, Metric

OPENAPI_PATH = "/v1/openapi.json"
# Printable ASCII without spaces: keys end up hashed, but they are echoed in nothing.
_IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_SAFE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

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
    created = uploads.create_upload(runtime().ctx, tenant(), request)
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
        runtime().ctx, tenant(), request.upload_id, request.options
    )
    logger.info("avatar registered", extra={"avatar_id": record.avatar_id, "new": created})
    return _json(HTTPStatus.CREATED if created else HTTPStatus.OK, record.view())


@app.get("/v1/avatars", summary="List the tenant's avatars, newest first", responses=_ERRORS)
def list_avatars(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=1024)] = None,
) -> AvatarList:
    return avatars.list_avatars(runtime().ctx, tenant(), limit=limit, next_token=next_token)


@app.get("/v1/avatars/<avatar_id>", summary="Get an avatar", responses=_ERRORS)
def get_avatar(avatar_id: Annotated[str, Path(pattern=_SAFE_ID_PATTERN)]) -> Avatar:
    return avatars.get_avatar(runtime().ctx, tenant(), avatar_id, field="avatar_id").view()


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
                tenant=tenant(),
                idempotency_key=idempotency_key,
                correlation_id=correlation_id(),
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
        runtime().ctx, tenant(), status=status, limit=limit, next_token=next_token
    )


@app.get("/v1/jobs/<job_id>", summary="Job status", responses=_ERRORS)
def get_job(job_id: Annotated[str, Path(pattern=_SAFE_ID_PATTERN)]) -> Job:
    return jobs.get_job(runtime().ctx, tenant(), job_id)


@app.get(
    "/v1/jobs/<job_id>/events",
    summary="The job's event log: status changes and webhook attempts, oldest first",
    responses=_ERRORS,
)
def get_job_events(job_id: Annotated[str, Path(pattern=_SAFE_ID_PATTERN)]) -> JobEvents:
    return jobs.job_events(runtime().ctx, tenant(), job_id)


@app.post(
    "/v1/jobs/<job_id>/webhook/redeliver",
    summary="Send the job's final event to its webhook again (signed, same webhook-id)",
    responses=_with_errors(202, "Redelivery queued"),
)
def redeliver_webhook(
    job_id: Annotated[str, Path(pattern=_SAFE_ID_PATTERN)],
) -> Response[WebhookRedeliveryQueued]:
    queued = webhook_deliveries.request_redelivery(runtime().ctx, tenant(), job_id)
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
            max_length=cancellation.CANCEL_REASON_MAX,
            description="Why: kept in the job's error message (printable text).",
        ),
    ] = None,
) -> JobCancelled:
    key_id = app.context.get("api_key_id")
    return cancellation.cancel_job(
        runtime().ctx,
        tenant(),
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
