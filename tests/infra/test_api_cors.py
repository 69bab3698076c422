"""Browser pages of the stage's origins may call the API: API Gateway answers their preflights
itself (no key, no Lambda), its own errors name the origin, and the handler is told the origins.
A stage without origins (prod by default) has none of it."""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk.assertions import Template

from infra.components.api_cors import add_preflights, gateway_error_headers
from infra.components.rest_api import ROUTES
from runtime.common.names import EnvVar
from tests.infra.conftest import Synthesized
from tests.infra.template_queries import one, resources


def _preflights(raw: dict) -> list[dict]:
    return [
        method["Properties"]
        for method in resources(raw, "AWS::ApiGateway::Method").values()
        if method["Properties"]["HttpMethod"] == "OPTIONS"
    ]


def test_every_route_answers_the_stages_preflight_without_a_key(dev: Synthesized) -> None:
    # Given dev, whose one origin is the playground served from a clone
    (origin,) = dev.config.cors_allowed_origins
    preflights = _preflights(dev.raw)

    # Then every route's resource has a preflight, answered by API Gateway without a key
    assert len(preflights) == len({path for path, _ in ROUTES})
    allowed_methods = set()
    for props in preflights:
        assert props["AuthorizationType"] == "NONE"
        assert not props.get("ApiKeyRequired", False)
        assert props["Integration"]["Type"] == "MOCK"
        (answer,) = props["Integration"]["IntegrationResponses"]
        headers = answer["ResponseParameters"]
        # And it allows that origin, the headers the page sends, and the route's methods
        assert headers["method.response.header.Access-Control-Allow-Origin"] == f"'{origin}'"
        sent = headers["method.response.header.Access-Control-Allow-Headers"].strip("'")
        assert {"Content-Type", "X-Api-Key", "Idempotency-Key", "X-Correlation-Id"} <= set(
            sent.split(",")
        )
        allowed_methods |= set(
            headers["method.response.header.Access-Control-Allow-Methods"].strip("'").split(",")
        )
    assert {method for _, method in ROUTES} <= allowed_methods


def test_gateway_errors_and_the_handler_know_the_origin(
    dev: Synthesized, prod: Synthesized
) -> None:
    for stage in (dev, prod):
        origins = list(stage.config.cors_allowed_origins)
        _, function = one(stage.raw, "AWS::Lambda::Function", "ApiHandler")
        variables = function["Properties"]["Environment"]["Variables"]
        assert json.loads(variables[EnvVar.CORS_ALLOWED_ORIGINS.value]) == origins
        for response in resources(stage.raw, "AWS::ApiGateway::GatewayResponse").values():
            parameters = response["Properties"].get("ResponseParameters", {})
            allow = parameters.get("gatewayresponse.header.Access-Control-Allow-Origin")
            # A wrong key or throttling reaches the page as the API's JSON error, not as CORS
            assert allow == (f"'{origins[0]}'" if origins else None)


def test_a_stage_without_origins_has_no_preflight(prod: Synthesized) -> None:
    assert prod.config.cors_allowed_origins == ()
    assert _preflights(prod.raw) == []


def test_several_origins_are_checked_per_request_never_answered_with_a_wildcard() -> None:
    # Given a REST API allowing two origins
    stack = cdk.Stack()
    api = apigateway.RestApi(stack, "Api")
    api.root.add_method("ANY")
    first, second = "https://a.example.com", "https://b.example.com"
    add_preflights(api.root, (("jobs", "GET"),), (first, second))
    (method,) = (
        Template.from_stack(stack)
        .find_resources("AWS::ApiGateway::Method", {"Properties": {"HttpMethod": "OPTIONS"}})
        .values()
    )
    (answer,) = method["Properties"]["Integration"]["IntegrationResponses"]

    # Then the answer names the first origin, and the second only when the request comes from it
    # (any other page gets an origin that is not its own, which the browser refuses)
    allow = answer["ResponseParameters"]["method.response.header.Access-Control-Allow-Origin"]
    assert allow == f"'{first}'"
    override = answer["ResponseTemplates"]["application/json"]
    assert f'#if($origin == "{second}")' in override
    assert "responseOverride.header.Access-Control-Allow-Origin = $origin" in override
    # And the gateway's own errors name no origin (one fixed header cannot name two)
    assert gateway_error_headers((first, second)) is None
    assert gateway_error_headers(()) is None
