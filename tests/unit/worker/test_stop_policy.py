"""On SIGTERM the current job finishes only if it can before the stop timeout."""

from __future__ import annotations

from runtime.worker.shutdown import StopPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _policy_rendering(*, timeout: float, seconds_per_frame: float, done: int, total: int):  # type: ignore[no-untyped-def]
    clock = FakeClock()
    policy = StopPolicy(timeout, clock=clock)
    policy.job_started()
    policy.progress(0, total)
    clock.now += seconds_per_frame * done
    policy.progress(done, total)
    return policy, clock


def test_without_a_stop_request_the_job_is_never_interrupted() -> None:
    policy, _ = _policy_rendering(timeout=10, seconds_per_frame=1, done=1, total=1000)
    assert not policy.should_interrupt()


def test_a_job_that_fits_in_the_window_finishes() -> None:
    # Given 100 frames left at 0.1 s each (10 s) and a 120 s stop timeout (margin 10 s)
    policy, _ = _policy_rendering(timeout=120, seconds_per_frame=0.1, done=100, total=200)
    # When the stop is requested
    policy.request()
    # Then the job goes on, and the estimate says why
    assert policy.seconds_left_estimate() == 10.0
    assert not policy.should_interrupt()


def test_a_job_that_cannot_fit_is_interrupted() -> None:
    # Given 900 frames left at 0.2 s each (180 s) and a 120 s stop timeout
    policy, _ = _policy_rendering(timeout=120, seconds_per_frame=0.2, done=100, total=1000)
    policy.request()
    assert policy.should_interrupt()


def test_the_decision_tracks_the_time_already_spent_since_the_signal() -> None:
    # Given a job that fits when the signal arrives (50 s left, 120 s window, 10 s margin)
    policy, clock = _policy_rendering(timeout=120, seconds_per_frame=1, done=50, total=100)
    policy.request()
    assert not policy.should_interrupt()
    # When the render stalls for 65 s without progress, the same 50 s no longer fit
    clock.now += 65
    policy.progress(50, 100)
    assert policy.should_interrupt()


def test_without_a_measured_rate_it_waits_for_one_for_half_the_window() -> None:
    clock = FakeClock()
    policy = StopPolicy(20, clock=clock)
    policy.job_started()
    policy.progress(0, 100)
    policy.request()
    assert not policy.should_interrupt()
    clock.now += 11
    assert policy.should_interrupt()


def test_a_lost_lease_interrupts_even_without_a_stop_request() -> None:
    policy = StopPolicy(120)
    policy.job_started()
    policy.lease_lost()
    assert policy.should_interrupt()


def test_the_rate_counts_from_the_render_start_so_one_batch_is_enough() -> None:
    # Given an engine that reports progress only after each batch (none at frame 0)
    clock = FakeClock()
    policy = StopPolicy(30, clock=clock)
    policy.job_started()
    policy.render_started()
    clock.now += 2
    policy.progress(16, 400)  # first batch: 16 frames in 2 s

    # Then the estimate exists at once: 384 frames left at 0.125 s each
    assert policy.seconds_left_estimate() == 48.0
    policy.request()
    assert policy.should_interrupt()


def test_a_resumed_render_counts_only_the_frames_it_rendered() -> None:
    # Given a render resumed at frame 250 whose first batch (16 frames) took 2 s
    clock = FakeClock()
    policy = StopPolicy(30, clock=clock)
    policy.job_started()
    policy.render_started(250)
    clock.now += 2
    policy.progress(266, 400)

    # Then the rate is 0.125 s a frame (not 2 s over 266 frames): 134 frames left take 16.75 s
    assert policy.seconds_left_estimate() == 16.75
