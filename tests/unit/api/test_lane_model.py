"""The lane model: a job's time is fitted to recent renders (overhead + frames x rate), and a
queued job starts when the workers are free of the running jobs and the jobs ahead of it."""

from __future__ import annotations

import pytest

from runtime.api.lane_model import fit, start_after


def test_a_fit_separates_the_per_job_overhead_from_the_per_frame_rate() -> None:
    model = fit([(100, 6.0), (250, 12.0), (500, 22.0)])
    assert model is not None
    assert model.overhead_seconds == pytest.approx(2.0)
    assert model.seconds_per_frame == pytest.approx(0.04)
    assert model.job_seconds(1000) == pytest.approx(42.0)
    assert model.job_seconds(None) == pytest.approx(40.0 / 3)  # unknown length: the mean job


def test_samples_of_one_length_give_the_plain_rate() -> None:
    model = fit([(250, 10.0), (250, 12.0)])
    assert model is not None
    assert (model.overhead_seconds, model.seconds_per_frame) == (0.0, pytest.approx(22 / 500))
    assert fit([]) is None


def test_jobs_ahead_go_to_whichever_worker_is_free_first() -> None:
    # Two workers busy 30 s and 5 s; jobs ahead of 10 s and 40 s
    assert start_after([30.0, 5.0], [10.0, 40.0], workers=2) == 30.0
    # An idle third worker takes the first job at once
    assert start_after([30.0, 5.0], [10.0], workers=3) == 5.0
    # No work at all: now
    assert start_after([], [], workers=1) == 0.0
