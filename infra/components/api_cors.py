"""Browser access to the REST API (CORS) for the stage's origins, e.g. the playground's host.

A page on another origin sends a preflight (`OPTIONS`) before each call, because it sends
`x-api-key` and JSON. API Gateway answers it with a mock integration on every route, without an
API key (browsers never send credentials on a preflight), echoing the request's origin only when
it is one of the stage's. The Lambda adds the CORS headers to its own answers
(`runtime.api.cors`). API Gateway's own errors (a wrong key, throttling) bypass the Lambda, so
they carry the origin from their gateway responses, which can name one fixed origin: with
several, a page on any of them still gets the Lambda's answers, but reads a gateway error as a
network failure.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway

from runtime.api.cors import PREFLIGHT_HEADERS, PREFLIGHT_MAX_AGE_SECONDS

PREFLIGHT_MAX_AGE = Duration.seconds(PREFLIGHT_MAX_AGE_SECONDS)


def add_preflights(
    root: apigateway.IResource, routes: tuple[tuple[str, str], ...], origins: tuple[str, ...]
) -> None:
    """An `OPTIONS` mock on each route's resource, allowing its methods from `origins`."""
    if not origins:
        return
    methods: dict[str, list[str]] = {}
    for path, method in routes:
        methods.setdefault(path, []).append(method)
    for path, allowed in methods.items():
        root.resource_for_path(path).add_cors_preflight(
            allow_origins=list(origins),
            allow_headers=list(PREFLIGHT_HEADERS),
            allow_methods=allowed,
            max_age=PREFLIGHT_MAX_AGE,
        )


def gateway_error_headers(origins: tuple[str, ...]) -> dict[str, str] | None:
    """Headers of API Gateway's own error answers: the origin when the stage has exactly one."""
    if len(origins) != 1:
        return None
    return {"Access-Control-Allow-Origin": f"'{origins[0]}'", "Vary": "'Origin'"}
