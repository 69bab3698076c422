"""The sweeper (scheduled; entry point `entrypoints.sweeper`): re-send jobs whose queue message was
never confirmed.

The API writes a job with `unsent_lane` set and clears it once SQS accepted the message. A job that
stays in the sparse `unsent` index longer than the grace period lost its send (SQS failed, the
Lambda timed out between write and send, the caller never retried): the sweeper sends it and
clears the flag. A send racing with a late API send can deliver a job twice; the worker drops
the duplicate, which is the safe side of "nothing accepted is lost".

Each scheduled run first touches the lane queues (`queue_wake`, called by the entry point): SQS
stops a queue's CloudWatch metrics after six idle hours, and the batch lane, which scales to
zero, would otherwise see its first job after a quiet night up to 15 minutes late.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.api.context import ApiContext, iso
from runtime.api.jobs import enqueue
from runtime.api.observability import logger, tracer
from runtime.common.jobs import JobStatus
from runtime.common.names import JobsTable, Lane
from runtime.common.records import JobRecord

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
        for item in ctx.table.unsent_before(lane.value, cutoff):
            record = _current(ctx, item)
            if record is None or record.unsent_lane is None:
                continue
            if record.status != JobStatus.QUEUED:
                ctx.table.clear_unsent(record.job_id)
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


def _current(ctx: ApiContext, item: dict[str, Any]) -> JobRecord | None:
    """Indexes are eventually consistent: decide on a consistent read of the record itself."""
    fresh = ctx.table.item(item[JobsTable.PARTITION_KEY])
    return JobRecord.from_item(fresh) if fresh is not None else None
