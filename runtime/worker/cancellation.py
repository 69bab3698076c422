"""A job that stopped being this worker's while it ran: ended by someone else (its caller's
cancel, a purge) or taken over by another worker after this one missed its lease.

The fenced record writes only say "not ours any more"; the record says which. A job that ended
is settled here at once: logged as what it was (never as a lost lease), its segments and preview
playlist deleted, and its message deleted, so the queue does not bring it back as a duplicate.
A take-over writes nothing: the other worker owns the job, its message and its segments.
"""

from __future__ import annotations

from typing import Any

from runtime.common.records import JobRecord
from runtime.common.render_files import delete_render_files
from runtime.worker.job_store import JobStore
from runtime.worker.lanes import Delivery, LanePoller
from runtime.worker.telemetry import logger


def ended_elsewhere(store: JobStore, job_id: str) -> JobRecord | None:
    """The job's record if it is final (someone else ended it); None if it runs elsewhere."""
    record = store.get(job_id)
    return record if record is not None and record.status.is_final else None


def settle_ended(
    record: JobRecord,
    *,
    s3: Any,
    outputs_bucket: str,
    poller: LanePoller,
    delivery: Delivery,
) -> None:
    """Clean up after a job its caller cancelled (or purged) while this worker rendered it."""
    error = record.error
    logger.info(
        "job cancelled while running; stopped",
        extra={
            "status": record.status.value,
            "error_code": error.code.value if error is not None else None,
            "reason": error.message if error is not None else None,
        },
    )
    # One more than recorded: a segment may have landed after the record stopped taking writes.
    segments = (record.segments_done or 0) + 1
    if not delete_render_files(s3, outputs_bucket, record.tenant, record.job_id, segments=segments):
        logger.warning("could not delete the render's segments; their lifecycle rule will")
    poller.delete(delivery)
