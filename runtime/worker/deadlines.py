"""The job deadline (`cancel_after`) and the clock it is read on.

`now` is a seam: tests move it forward instead of sleeping, so every deadline and recheck reads
the time through `deadlines.now()`.
"""

from __future__ import annotations

from datetime import datetime

from runtime.common.jobs import JobMessage
from runtime.worker.job_store import utc_now


class DeadlineExceeded(Exception):
    """The job's `cancel_after` deadline passed after it started."""


def now() -> datetime:
    """The deadline clock (a seam: tests move it forward instead of sleeping)."""
    return utc_now()


def deadline_passed(deadline_at: str | None) -> bool:
    """True once the message's deadline is behind us; an unreadable deadline never fires."""
    if deadline_at is None:
        return False
    try:
        deadline = datetime.fromisoformat(deadline_at)
    except ValueError:
        return False
    return now() >= deadline


def check_deadline(message: JobMessage, stage: str) -> None:
    """Stop before `stage` once the deadline passed: no download or GPU work for a dead job."""
    if deadline_passed(message.deadline_at):
        raise DeadlineExceeded(stage)


def seconds_until(moment: str | None, reference: datetime | None = None) -> int:
    """Whole seconds from `reference` (default now) to an ISO moment; 0 if past or unreadable."""
    if moment is None:
        return 0
    try:
        then = datetime.fromisoformat(moment)
    except ValueError:
        return 0
    return max(0, int((then - (reference or utc_now())).total_seconds()))
