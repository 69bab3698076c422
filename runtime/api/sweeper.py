"""Scheduled Lambda: re-send jobs whose queue message was never confirmed.

The API writes a job with `unsent_lane` set and clears it once SQS accepted the message. A job that
stays in the sparse `unsent` index longer than the grace period lost its send (SQS failed, the
Lambda timed out between write and send, the caller never retried): the sweeper sends it and
clears the flag. A send racing with a late API send can deliver a job twice; the worker drops
the duplicate, which is the safe side of "nothing accepted is lost".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from runtime.api.context import ApiContext, iso
from runtime.api.jobs import enqueue
from runtime.api.observability import logger, tracer
from runtime.api.settings import Settings
from runtime.common.jobs import JobStatus
from runtime.common.metrics import DIMENSION_LANE, DIMENSION_SERVICE, NAMESPACE, Metric
from runtime.common.names import JobsTable, Lane
from runtime.common.records import JobRecord, job_pk

# Longer than an API request can take between writing a job and sending it (API Gateway caps
# integrations at 29 s), so the sweeper never races a healthy in-flight request.
GRACE_SECONDS = 120


@dataclass(frozen=True)
class SweepResult:
    resent: dict[Lane, int]
    cleared: int  # flags dropped for jobs that no longer need a message (cancelled meanwhile)
    failed: int


@tracer.capture_method(capture_response=False)  # responses stay out of traces
def sweep(ctx: ApiContext, *, grace_seconds: int = GRACE_SECONDS) -> SweepResult:
    cutoff = iso(ctx.now() - timedelta(seconds=grace_seconds))
    resent = dict.fromkeys(Lane, 0)
    cleared = failed = 0
    for lane in Lane:
        for item in _stale_unsent(ctx, lane, cutoff):
            record = _current(ctx, item)
            if record is None or record.unsent_lane is None:
                continue
            if record.status != JobStatus.QUEUED:
                _clear_flag(ctx, record.job_id)
                cleared += 1
                continue
            try:
                enqueue(ctx, record)
            except (ClientError, BotoCoreError):
                logger.exception(
                    "re-send failed; next run retries", extra={"job_id": record.job_id}
                )
                failed += 1
                continue
            logger.info("job re-sent", extra={"job_id": record.job_id, "lane": lane.value})
            resent[lane] += 1
    return SweepResult(resent=resent, cleared=cleared, failed=failed)


def _stale_unsent(ctx: ApiContext, lane: Lane, cutoff: str) -> Any:
    kwargs: dict[str, Any] = {
        "IndexName": JobsTable.UNSENT_INDEX,
        "KeyConditionExpression": "#lane = :lane AND #created < :cutoff",
        "ExpressionAttributeNames": {
            "#lane": JobsTable.UNSENT_INDEX_PARTITION_KEY,
            "#created": JobsTable.UNSENT_INDEX_SORT_KEY,
        },
        "ExpressionAttributeValues": {":lane": lane.value, ":cutoff": cutoff},
    }
    while True:
        page = ctx.table.query(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _current(ctx: ApiContext, item: dict[str, Any]) -> JobRecord | None:
    """Indexes are eventually consistent: decide on a consistent read of the record itself."""
    fresh = ctx.table.get_item(
        Key={JobsTable.PARTITION_KEY: item[JobsTable.PARTITION_KEY]}, ConsistentRead=True
    ).get("Item")
    return JobRecord.from_item(fresh) if fresh is not None else None


def _clear_flag(ctx: ApiContext, job_id: str) -> None:
    ctx.table.update_item(
        Key={JobsTable.PARTITION_KEY: job_pk(job_id)},
        UpdateExpression="REMOVE #unsent",
        ExpressionAttributeNames={"#unsent": JobsTable.UNSENT_INDEX_PARTITION_KEY},
    )


@functools.cache
def _context() -> ApiContext:
    return ApiContext.from_settings(Settings.from_env())


@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = sweep(_context())
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
        },
    )
    return {
        "resent": sum(result.resent.values()),
        "cleared": result.cleared,
        "failed": result.failed,
    }
