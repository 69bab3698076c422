"""When a job waiting for another job's render of the same content looks again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runtime.worker.job_endings import RENDER_FINISH_MARGIN_SECONDS, recheck_seconds
from runtime.worker.job_store import iso
from runtime.worker.render_claims import ClaimHeld

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def held(*, expires_in: float = 120, done_in: float | None = None) -> ClaimHeld:
    done_by = None if done_in is None else iso(NOW + timedelta(seconds=done_in))
    return ClaimHeld("holder-job", iso(NOW + timedelta(seconds=expires_in)), done_by)


def test_before_the_holder_knows_its_rate_the_wait_is_the_retry_base_doubled_per_wait() -> None:
    # Given a holder that has not estimated its finish yet
    claim = held()
    # When jobs wait on their first, second and fifth waits
    waits = [
        recheck_seconds(claim, base_seconds=15, wait_number=n, deadline_at=None, at=NOW)
        for n in (1, 2, 5)
    ]
    # Then each waits twice as long as the one before, capped by the claim's expiry (+1 s)
    assert waits == [15, 30, 121]


def test_a_holder_that_expects_to_finish_soon_brings_the_recheck_forward() -> None:
    # Given a holder that expects to be done in 3 s
    claim = held(done_in=3)
    # When a job waits
    wait = recheck_seconds(claim, base_seconds=15, wait_number=1, deadline_at=None, at=NOW)
    # Then it looks again just after that (upload and cache copy included), not after 15 s
    assert wait == 3 + RENDER_FINISH_MARGIN_SECONDS


def test_the_jobs_deadline_brings_the_recheck_forward_so_it_expires_on_time() -> None:
    # Given a job whose deadline is 5 s away, behind a long render
    deadline = iso(NOW + timedelta(seconds=5))
    # When it waits
    wait = recheck_seconds(
        held(done_in=600), base_seconds=15, wait_number=1, deadline_at=deadline, at=NOW
    )
    # Then it comes back right after its deadline (and is expired then)
    assert wait == 6


def test_an_expired_claim_or_a_passed_estimate_means_looking_again_at_once() -> None:
    # Given a claim past its expiry, and one whose holder's estimate has passed
    expired = held(expires_in=-30)
    overdue = held(done_in=-10)
    # Then the waits are a second, and the finish margin
    assert recheck_seconds(expired, base_seconds=15, wait_number=1, deadline_at=None, at=NOW) == 1
    overdue_wait = recheck_seconds(
        overdue, base_seconds=15, wait_number=1, deadline_at=None, at=NOW
    )
    assert overdue_wait == RENDER_FINISH_MARGIN_SECONDS
