"""A completion event for tests that only need a valid one to send."""

from __future__ import annotations

from runtime.common.jobs import CompletionEvent, JobStatus
from runtime.common.names import Lane


def succeeded_event() -> CompletionEvent:
    return CompletionEvent(
        type="job.succeeded",
        job_id="job-1",
        tenant="tenant-a",
        status=JobStatus.SUCCEEDED,
        lane=Lane.INTERACTIVE,
        correlation_id="corr-1",
        finished_at="2026-01-01T00:00:00.000Z",
    )
