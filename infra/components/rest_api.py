"""The job API's REST front: the regional REST API and its stage, one API key per tenant on a usage
plan, the /v1 routes to the handler Lambda, and the gateway's own error answers.

Its constructs are created in the caller's scope (`JobApi`), so their logical ids are the ones
the stack has always had: moving them under a new construct would replace the API on deploy.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aws_cdk import Aws, CfnOutput, Fn, RemovalPolicy
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.components.api_cors import add_preflights, gateway_error_headers
from infra.components.nag import acknowledge

if TYPE_CHECKING:
    from infra.components.job_api import ApiSettings

ROUTES: tuple[tuple[str, str], ...] = (
    ("uploads", "POST"),
    ("avatars", "POST"),
    ("avatars", "GET"),
    ("avatars/{avatar_id}", "GET"),
    ("jobs", "POST"),
    ("jobs", "GET"),
    ("jobs/{job_id}", "GET"),
    ("jobs/{job_id}", "DELETE"),
    ("jobs/{job_id}/events", "GET"),
    ("jobs/{job_id}/webhook/redeliver", "POST"),
    ("openapi.json", "GET"),
)
# POST routes that take no body: the gateway's JSON-object body check does not apply.
BODYLESS_POSTS = frozenset({"jobs/{job_id}/webhook/redeliver"})


def rest_api(scope: Construct, settings: ApiSettings) -> apigateway.RestApi:
    """The regional REST API, its stage (tracing, JSON access logs, stage-wide throttle)."""
    access_logs = logs.LogGroup(
        scope,
        "AccessLogs",
        retention=settings.log_retention,
        removal_policy=RemovalPolicy.DESTROY,
    )
    rest_api = apigateway.RestApi(
        scope,
        "RestApi",
        rest_api_name=settings.name_prefix,
        description="MuseTalk lip-sync job API",
        endpoint_types=[apigateway.EndpointType.REGIONAL],
        api_key_source_type=apigateway.ApiKeySourceType.HEADER,
        # Access logs need the account's API Gateway CloudWatch role (AWS::ApiGateway::Account):
        # the stage create fails in an account/region that never set one. The role is kept
        # when the stack goes, as other APIs of the account may log through it.
        cloud_watch_role=True,
        cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
        deploy_options=apigateway.StageOptions(
            stage_name=settings.stage,
            tracing_enabled=True,
            access_log_destination=apigateway.LogGroupLogDestination(access_logs),
            access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                caller=False,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=False,
            ),
            # All tenants together; each key has its own, lower limit in the usage plan.
            throttling_rate_limit=settings.stage_throttle_rate,
            throttling_burst_limit=settings.stage_throttle_burst,
        ),
    )
    for finding, reason in {
        "AwsSolutions-APIG4": "Callers authenticate with per-tenant API keys (usage plan), "
        "which the handler maps to a tenant; put an IAM or Cognito authorizer in front if "
        "your organisation requires one.",
        "AwsSolutions-COG4": "Tenants are machine clients with API keys, not Cognito users.",
        "AwsSolutions-APIG3": "Usage plans throttle and cap every tenant; attach a WAF web "
        "ACL to the stage where the account already runs one (docs/deploy.md).",
        "AwsSolutions-APIG6": "JSON access logs are on for every method. Execution logs can "
        "leak request bodies (faces, voices, webhook URLs), so they stay off.",
    }.items():
        acknowledge(rest_api, finding, reason)
    acknowledge(
        rest_api.node.find_child("CloudWatchRole"),
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AmazonAPIGatewayPushToCloudWatchLogs]",
        "The AWS-managed policy API Gateway documents for its account-wide logging role.",
    )
    return rest_api


def tenant_keys(
    scope: Construct, rest_api: apigateway.RestApi, settings: ApiSettings
) -> tuple[apigateway.UsagePlan, dict[str, apigateway.ApiKey]]:
    """One API key per tenant on one usage plan (per-key throttle and daily quota)."""
    plan = rest_api.add_usage_plan(
        "UsagePlan",
        name=f"{settings.name_prefix}-tenants",
        throttle=apigateway.ThrottleSettings(
            rate_limit=settings.throttle_rate, burst_limit=settings.throttle_burst
        ),
        quota=apigateway.QuotaSettings(limit=settings.quota_per_day, period=apigateway.Period.DAY),
    )
    plan.add_api_stage(stage=rest_api.deployment_stage)
    keys: dict[str, apigateway.ApiKey] = {}
    for tenant in settings.tenants:
        key = apigateway.ApiKey(
            scope,
            f"Key-{tenant}",
            api_key_name=f"{settings.name_prefix}-{tenant}",
            description=f"Tenant {tenant}",
            enabled=True,
        )
        plan.add_api_key(key)
        keys[tenant] = key
        # The id, never the value: `aws apigateway get-api-key --api-key <id> --include-value`.
        CfnOutput(
            scope,
            f"ApiKeyId-{tenant}",
            value=key.key_id,
            description=f"API key id of tenant {tenant} (value: get-api-key --include-value)",
        )
    return plan, keys


def add_routes(
    scope: Construct,
    rest_api: apigateway.RestApi,
    handler: lambda_.IFunction,
    cors_allowed_origins: tuple[str, ...],
) -> None:
    """Every route under /v1 to the handler, with the gateway's own checks and errors."""
    integration = apigateway.LambdaIntegration(handler, proxy=True, allow_test_invoke=False)
    body_validator = rest_api.add_request_validator(
        "BodyValidator", validate_request_body=True, validate_request_parameters=True
    )
    params_validator = rest_api.add_request_validator(
        "ParamsValidator", validate_request_body=False, validate_request_parameters=True
    )
    # The gateway rejects non-object bodies; the handler's pydantic models do the rest and
    # name the failing field.
    json_object = rest_api.add_model(
        "JsonObject",
        content_type="application/json",
        schema=apigateway.JsonSchema(
            schema=apigateway.JsonSchemaVersion.DRAFT4,
            type=apigateway.JsonSchemaType.OBJECT,
        ),
    )
    _gateway_responses(rest_api, cors_allowed_origins)
    v1 = rest_api.root.add_resource("v1")
    for path, method in ROUTES:
        resource = v1.resource_for_path(path)
        is_write = method == "POST" and path not in BODYLESS_POSTS
        resource.add_method(
            method,
            integration,
            api_key_required=True,
            request_validator=body_validator if is_write else params_validator,
            request_models={"application/json": json_object} if is_write else None,
            request_parameters=(
                {"method.request.path.job_id": True} if "{job_id}" in path else None
            ),
        )
    add_preflights(v1, ROUTES, cors_allowed_origins)
    CfnOutput(scope, "ApiUrl", value=rest_api.url, description="Base URL; routes live under /v1")
    CfnOutput(
        scope,
        "ApiKeyValueCommand",
        value=Fn.join("", ["aws apigateway get-api-key --include-value --region ", Aws.REGION]),
        description="Append --api-key <ApiKeyId-...> to read a tenant's key value",
    )


def _gateway_responses(rest_api: apigateway.RestApi, cors_allowed_origins: tuple[str, ...]) -> None:
    """Requests the gateway itself rejects get the same JSON error shape as the handler's,
    with a message that says what to fix (never the default `Forbidden`)."""
    for response_type, status, code, message in _GATEWAY_ERRORS:
        rest_api.add_gateway_response(
            response_type.response_type.title().replace("_", ""),
            type=response_type,
            status_code=status,
            response_headers=gateway_error_headers(cors_allowed_origins),
            templates={
                "application/json": json.dumps(
                    {
                        "error": {
                            "code": code,
                            "message": message,
                            "request_id": "$context.requestId",
                        }
                    }
                )
            },
        )


_GATEWAY_ERRORS: tuple[tuple[apigateway.ResponseType, str, str, str], ...] = (
    (
        apigateway.ResponseType.BAD_REQUEST_BODY,
        "400",
        "INVALID_REQUEST",
        "$context.error.validationErrorString",
    ),
    (
        apigateway.ResponseType.BAD_REQUEST_PARAMETERS,
        "400",
        "INVALID_REQUEST",
        "$context.error.validationErrorString",
    ),
    (
        apigateway.ResponseType.API_CONFIGURATION_ERROR,
        "500",
        "INTERNAL",
        "The API is misconfigured; retry later.",
    ),
    (
        apigateway.ResponseType.INVALID_API_KEY,
        "403",
        "INVALID_API_KEY",
        "Send a valid tenant API key in the x-api-key header.",
    ),
    (
        # API Gateway answers an unknown route this way when no authorizer is configured.
        apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN,
        "404",
        "NOT_FOUND",
        "No such route: every route is under /v1 (see GET /v1/openapi.json).",
    ),
    (
        apigateway.ResponseType.QUOTA_EXCEEDED,
        "429",
        "QUOTA_EXCEEDED",
        "The daily request quota of this API key is used up.",
    ),
    (
        apigateway.ResponseType.THROTTLED,
        "429",
        "THROTTLED",
        "Too many requests; retry with backoff.",
    ),
)
