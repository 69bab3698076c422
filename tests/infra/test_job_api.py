"""API: regional REST API, every route under /v1 behind an API key, validated, traced, JSON
access logs; one key per tenant on the stage's usage plan; Lambdas wired as the contract says."""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk.assertions import Match

from infra.components.job_api import key_tenants_json
from infra.components.powertools_layer import POWERTOOLS_LAYER_PARAMETER
from infra.components.rest_api import BODYLESS_POSTS, ROUTES
from runtime.common.names import EnvVar
from tests.infra.conftest import REPO_ROOT, Synthesized
from tests.infra.template_queries import logical_id, one, resources


def _paths(raw: dict) -> dict[str, str]:
    """logical id -> full path of every API Gateway resource."""
    nodes = resources(raw, "AWS::ApiGateway::Resource")
    root_ref = {
        "Fn::GetAtt": [logical_id(raw, "AWS::ApiGateway::RestApi", "ApiRestApi"), "RootResourceId"]
    }

    def path_of(node_id: str) -> str:
        props = nodes[node_id]["Properties"]
        parent = props["ParentId"]
        prefix = "" if parent == root_ref else path_of(parent["Ref"])
        return f"{prefix}/{props['PathPart']}"

    return {node_id: path_of(node_id) for node_id in nodes}


def test_every_contract_route_exists_under_v1_and_requires_an_api_key(
    synthesized: Synthesized,
) -> None:
    paths = _paths(synthesized.raw)
    methods = {
        logical: method
        for logical, method in resources(synthesized.raw, "AWS::ApiGateway::Method").items()
        if method["Properties"]["HttpMethod"] != "OPTIONS"  # CORS preflights: test_api_cors.py
    }
    # When we list (method, path) of every method
    routes = {
        (m["Properties"]["HttpMethod"], paths[m["Properties"]["ResourceId"]["Ref"]])
        for m in methods.values()
    }
    # Then they are exactly the contract's routes
    assert routes == {(method, f"/v1/{path}") for path, method in ROUTES}
    for method in methods.values():
        props = method["Properties"]
        assert props["ApiKeyRequired"] is True
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert "RequestValidatorId" in props


def test_the_gateway_serves_every_route_of_the_committed_openapi_document() -> None:
    """The API's OpenAPI document is generated from the handler's resolver; a route added there
    and not here would be a 404 (or 403) at the gateway in a real deployment."""
    document = json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented <= {(method, f"/v1/{path}") for path, method in ROUTES}


def test_write_routes_are_body_validated_at_the_gateway(synthesized: Synthesized) -> None:
    validators = resources(synthesized.raw, "AWS::ApiGateway::RequestValidator")
    body_validators = {k for k, v in validators.items() if v["Properties"]["ValidateRequestBody"]}
    bodyless = {
        resource_id
        for resource_id, resource in resources(synthesized.raw, "AWS::ApiGateway::Resource").items()
        if resource["Properties"]["PathPart"] == "redeliver"
    }
    assert len(bodyless) == len(BODYLESS_POSTS)
    for method in resources(synthesized.raw, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        if props["HttpMethod"] == "POST" and props["ResourceId"]["Ref"] not in bodyless:
            assert props["RequestValidatorId"]["Ref"] in body_validators
            assert "application/json" in props["RequestModels"]


def test_api_is_regional_traced_and_logs_access_as_json(synthesized: Synthesized) -> None:
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::RestApi", {"EndpointConfiguration": {"Types": ["REGIONAL"]}}
    )
    _, stage = one(synthesized.raw, "AWS::ApiGateway::Stage", "ApiRestApiDeploymentStage")
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    access_format = json.loads(props["AccessLogSetting"]["Format"])
    assert {"requestId", "status", "httpMethod", "resourcePath"} <= set(access_format)
    # Never who called with which key in plain text, nor request bodies.
    assert "user" not in access_format
    assert not any(s.get("DataTraceEnabled") for s in props.get("MethodSettings", []))


def test_usage_plan_throttles_and_caps_each_tenant_key(synthesized: Synthesized) -> None:
    config = synthesized.config
    synthesized.template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {
                "RateLimit": config.api_throttle_rate,
                "BurstLimit": config.api_throttle_burst,
            },
            "Quota": {"Limit": config.api_quota_per_day, "Period": "DAY"},
            "ApiStages": Match.any_value(),
        },
    )
    keys = resources(synthesized.raw, "AWS::ApiGateway::ApiKey")
    assert len(keys) == len(config.tenants)
    synthesized.template.resource_count_is("AWS::ApiGateway::UsagePlanKey", len(config.tenants))
    # Key values are generated by API Gateway, never in the template
    assert all("Value" not in k["Properties"] for k in keys.values())


def test_key_ids_but_never_key_values_are_outputs(synthesized: Synthesized) -> None:
    outputs = synthesized.raw["Outputs"]
    key_ids = set(resources(synthesized.raw, "AWS::ApiGateway::ApiKey"))
    referenced = {o["Value"].get("Ref") for o in outputs.values() if isinstance(o["Value"], dict)}
    assert key_ids <= referenced
    assert "APIKeyValue" not in json.dumps(outputs)


def test_handler_maps_api_key_ids_to_tenants(synthesized: Synthesized) -> None:
    _, handler = one(synthesized.raw, "AWS::Lambda::Function", "ApiHandler")
    env = handler["Properties"]["Environment"]["Variables"]
    mapping = json.dumps(env[EnvVar.API_KEY_TENANTS])
    for tenant in synthesized.config.tenants:
        key_id = logical_id(synthesized.raw, "AWS::ApiGateway::ApiKey", f"ApiKey{tenant}")
        assert f'"Ref": "{key_id}"' in mapping
        assert f':\\"{tenant}\\"' in mapping
    assert json.loads(env[EnvVar.LIMITS_JSON]) == json.loads(
        synthesized.config.limits.model_dump_json()
    )


def test_lambdas_run_our_handlers_traced_with_the_powertools_layer(
    synthesized: Synthesized,
) -> None:
    handlers = {
        "ApiHandler": "runtime.api.entrypoints.rest.lambda_handler",
        "ApiSweeper": "runtime.api.entrypoints.sweeper.lambda_handler",
        "ApiDeadLetters": "runtime.api.entrypoints.dead_letters.lambda_handler",
    }
    (layer_parameter,) = [
        name
        for name, p in synthesized.raw["Parameters"].items()
        if p.get("Default") == POWERTOOLS_LAYER_PARAMETER
    ]
    assert synthesized.raw["Parameters"][layer_parameter]["Type"] == (
        "AWS::SSM::Parameter::Value<String>"
    )
    for prefix, handler in handlers.items():
        _, function = one(synthesized.raw, "AWS::Lambda::Function", prefix)
        props = function["Properties"]
        assert props["Handler"] == handler
        assert props["Runtime"] == "python3.13"
        assert props["Architectures"] == ["arm64"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Layers"] == [{"Ref": layer_parameter}]
        assert props["Environment"]["Variables"][EnvVar.JOBS_TABLE] == {
            "Ref": logical_id(synthesized.raw, "AWS::DynamoDB::Table", "TablesJobs")
        }


def test_sweeper_runs_on_a_schedule(synthesized: Synthesized) -> None:
    sweeper = logical_id(synthesized.raw, "AWS::Lambda::Function", "ApiSweeper")
    minutes = synthesized.config.sweeper_interval_minutes
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": f"rate({minutes} minutes)",
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [sweeper, "Arn"]}})],
        },
    )


def test_dead_letter_handler_consumes_both_lane_dlqs(synthesized: Synthesized) -> None:
    function = logical_id(synthesized.raw, "AWS::Lambda::Function", "ApiDeadLetters")
    mappings = resources(synthesized.raw, "AWS::Lambda::EventSourceMapping").values()
    sources = {
        m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]
        for m in mappings
        if m["Properties"]["FunctionName"] == {"Ref": function}
        and m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    }
    assert sources == {
        logical_id(synthesized.raw, "AWS::SQS::Queue", "QueuesInteractiveDeadLetters"),
        logical_id(synthesized.raw, "AWS::SQS::Queue", "QueuesBatchDeadLetters"),
    }


def test_gateway_rejections_return_json_errors_that_say_what_to_fix(
    synthesized: Synthesized,
) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in resources(synthesized.raw, "AWS::ApiGateway::GatewayResponse").values()
    }
    # An invalid body names what failed validation
    body = json.loads(responses["BAD_REQUEST_BODY"]["ResponseTemplates"]["application/json"])
    assert responses["BAD_REQUEST_BODY"]["StatusCode"] == "400"
    assert body["error"]["message"] == "$context.error.validationErrorString"
    # An unknown route is a 404, not API Gateway's misleading 403
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"
    # A missing or wrong key says which header to send
    key = json.loads(responses["INVALID_API_KEY"]["ResponseTemplates"]["application/json"])
    assert "x-api-key" in key["error"]["message"]
    assert responses["THROTTLED"]["StatusCode"] == "429"
    assert responses["QUOTA_EXCEEDED"]["StatusCode"] == "429"


def test_key_to_tenant_map_is_valid_json_for_any_number_of_tenants() -> None:
    # Given key ids for several tenants (literals here; deploy-time tokens in the stack)
    stack = cdk.Stack()
    # When the map is built and resolved / Then it is the JSON object the handler parses
    resolved = stack.resolve(key_tenants_json({"acme": "k1", "globex": "k2", "initech": "k3"}))
    assert json.loads(resolved) == {"k1": "acme", "k2": "globex", "k3": "initech"}
    assert json.loads(stack.resolve(key_tenants_json({}))) == {}


def test_every_lambda_gets_the_whole_settings_its_handler_validates_at_cold_start(
    synthesized: Synthesized,
) -> None:
    """Given each function's synthesized environment (tokens stand in as strings), when the
    runtime's own Settings loader reads it, then nothing is missing: a deployed Lambda would
    otherwise fail on its first request."""
    from runtime.api.settings import Settings

    for prefix in ("ApiHandler", "ApiSweeper", "ApiDeadLetters"):
        _, function = one(synthesized.raw, "AWS::Lambda::Function", prefix)
        env = {
            name: value if isinstance(value, str) else json.dumps(value)
            for name, value in function["Properties"]["Environment"]["Variables"].items()
        }
        env[EnvVar.API_KEY_TENANTS] = json.dumps({"key-id": "tenant"})  # tokens resolve at deploy
        settings = Settings.from_env(env)
        assert settings.job_record_ttl_days == synthesized.config.job_record_ttl_days
        assert "POWERTOOLS_SERVICE_NAME" not in env, prefix
