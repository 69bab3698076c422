"""The REST API's Powertools resolver and metrics, shared by the routes and the error mapping."""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from runtime.common.metrics import DIMENSION_SERVICE, NAMESPACE

metrics = Metrics(namespace=NAMESPACE)
metrics.set_default_dimensions(**{DIMENSION_SERVICE: "api"})
app = APIGatewayRestResolver(enable_validation=True)


def tenant() -> str:
    """The caller's tenant, set by the entry point's gate before routing."""
    return str(app.context["tenant"])


def correlation_id() -> str:
    return str(app.context["correlation_id"])
