"""What to do with the current job when the task is told to stop (SIGTERM: spot interruption or
scale-in).

ECS gives `stopTimeout` seconds between SIGTERM and SIGKILL. The job in progress is finished when
the frames left, at the rate measured so far, fit in what remains of that window (less a margin
for upload and bookkeeping); otherwise the engine is interrupted at its next step and the job is
handed back at once, so another worker starts it without waiting for a visibility timeout.
Before the first batch has given a rate, the worker waits for one for up to half the window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class StopPolicy:
    def __init__(
        self, stop_timeout_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._timeout = stop_timeout_seconds
        self._clock = clock
        self._requested = threading.Event()
        self._deadline: float | None = None
        self._started: float | None = None
        self._frames_at_start = 0
        self._frames_done = 0
        self._frames_total = 0
        self._lease_lost = threading.Event()

    @property
    def margin_seconds(self) -> float:
        """Reserved for upload and bookkeeping after the last frame."""
        return min(10.0, 0.25 * self._timeout)

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def request(self) -> None:
        """Called from the signal handler: only sets state."""
        if not self._requested.is_set():
            self._deadline = self._clock() + self._timeout
            self._requested.set()

    def wait(self, seconds: float) -> bool:
        return self._requested.wait(seconds)

    def job_started(self) -> None:
        self._started = None
        self._frames_at_start = self._frames_done = self._frames_total = 0
        self._lease_lost.clear()

    def render_started(self, first_frame: int = 0) -> None:
        """Measure from here, so the first batch already gives a (conservative) rate; a resumed
        render starts at `first_frame`, and the frames before it took no time here."""
        self._started = self._clock()
        self._frames_at_start = first_frame

    def lease_lost(self) -> None:
        self._lease_lost.set()

    @property
    def is_lease_lost(self) -> bool:
        return self._lease_lost.is_set()

    def progress(self, frames_done: int, frames_total: int) -> None:
        if self._started is None:
            self._started = self._clock()
            self._frames_at_start = frames_done
        self._frames_done = frames_done
        self._frames_total = frames_total

    @property
    def frames_total(self) -> int | None:
        """The running render's frame count; None until the engine reports progress."""
        return self._frames_total or None

    def seconds_left_estimate(self) -> float | None:
        """Frames left times seconds per frame measured so far; None before any rate is known."""
        if self._started is None:
            return None
        frames_measured = self._frames_done - self._frames_at_start
        if frames_measured <= 0:
            return None
        per_frame = (self._clock() - self._started) / frames_measured
        return max(0, self._frames_total - self._frames_done) * per_frame

    def should_interrupt(self) -> bool:
        """The engine's `should_stop`: true when the job cannot end before the stop deadline."""
        if self._lease_lost.is_set():
            return True
        if not self._requested.is_set() or self._deadline is None:
            return False
        now = self._clock()
        estimate = self.seconds_left_estimate()
        if estimate is None:
            # No rate yet (the first batch is still running): wait for one while at most half
            # of the stop window has passed, then give up on finishing.
            return now > self._deadline - self._timeout / 2
        return now + estimate + self.margin_seconds > self._deadline
