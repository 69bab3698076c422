"""Local mode dates an expiring object as S3 does: write time plus `Days`, rounded up to
midnight UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from runtime.local.lifecycle import expiry_date

MIDNIGHT = datetime(2026, 1, 18, tzinfo=UTC)


@pytest.mark.parametrize(
    ("written", "days", "expires"),
    [
        # The S3 User Guide's example: 10:30 on the 15th, 3 days -> midnight starting the 19th
        (datetime(2026, 1, 15, 10, 30, tzinfo=UTC), 3, datetime(2026, 1, 19, tzinfo=UTC)),
        # Just after midnight: the whole next day is added
        (MIDNIGHT + timedelta(microseconds=1), 1, MIDNIGHT + timedelta(days=2)),
        (MIDNIGHT + timedelta(seconds=1), 1, MIDNIGHT + timedelta(days=2)),
        # Just before midnight: expires at the midnight a day later, barely a day on
        (MIDNIGHT - timedelta(seconds=1), 1, MIDNIGHT + timedelta(days=1)),
        (MIDNIGHT - timedelta(microseconds=1), 30, MIDNIGHT + timedelta(days=30)),
        # Exactly midnight: already on a midnight, so exactly `days` later
        (MIDNIGHT, 1, MIDNIGHT + timedelta(days=1)),
        (MIDNIGHT, 7, MIDNIGHT + timedelta(days=7)),
    ],
)
def test_expiry_is_write_time_plus_days_rounded_up_to_midnight_utc(
    written: datetime, days: int, expires: datetime
) -> None:
    assert expiry_date(written, days) == expires


def test_midnight_is_utc_whatever_zone_the_write_time_is_in() -> None:
    # 23:30 on the 17th at UTC+2 is 21:30 UTC: rounded to the UTC midnight, not the local one
    written = datetime(2026, 1, 17, 23, 30, tzinfo=timezone(timedelta(hours=2)))
    assert expiry_date(written, 1) == MIDNIGHT + timedelta(days=1)
    assert expiry_date(written, 1).utcoffset() == timedelta(0)
