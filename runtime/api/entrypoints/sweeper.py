"""Lambda entry point of the scheduled sweeper (`runtime.api.sweeper`): touch the queues nothing
polls so CloudWatch keeps their metrics (`runtime.api.queue_wake`), then one sweep and its
metrics."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from runtime.api.context import ApiContext
from runtime.api.observability import logger, tracer
from runtime.api.queue_wake import touch_queues, unpolled_queues
from runtime.api.settings import Settings
from runtime.api.sweeper import sweep
from runtime.common.metrics import DIMENSION_LANE, DIMENSION_SERVICE, NAMESPACE, Metric


@functools.cache
def _context() -> ApiContext:
    return ApiContext.from_settings(Settings.from_env())


@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ctx = _context()
    # First, so a sweep that raises still leaves the queues awake.
    woken = touch_queues(ctx.sqs, unpolled_queues(ctx.settings))
    result = sweep(ctx)
    for lane, count in result.resent.items():
        if count:
            with single_metric(
                name=Metric.JOBS_REENQUEUED,
                unit=MetricUnit.Count,
                value=count,
                namespace=NAMESPACE,
                default_dimensions={DIMENSION_SERVICE: "api"},
            ) as metric:
                metric.add_dimension(name=DIMENSION_LANE, value=lane.value)
    logger.info(
        "sweep done",
        extra={
            "resent": {lane.value: count for lane, count in result.resent.items()},
            "cleared": result.cleared,
            "failed": result.failed,
            "queues_touched": list(woken.touched),
        },
    )
    return {
        "resent": sum(result.resent.values()),
        "cleared": result.cleared,
        "failed": result.failed,
        "queues_touched": len(woken.touched),
    }
