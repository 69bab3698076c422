"""How long a lane's jobs take, and when a queued job starts: a model of the lane, without I/O.

- **Job time** `overhead + frames x seconds_per_frame`, fitted (least squares) to the lane's
  recent render samples (frames, service seconds), so a job's own length counts and so does the
  per-job cost of downloading, preparing and uploading. With too few distinct lengths to fit, or
  a fit that makes no sense (negative overhead or rate), the overhead is 0 and the rate is total
  seconds / total frames.
- **Start** of a queued job: the lane's workers are busy for the running jobs' remaining time
  (0 when idle); the jobs ahead are dealt, oldest first, to whichever worker is free first, as
  workers take messages; the job starts when the next worker is free after that.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LaneModel:
    overhead_seconds: float
    seconds_per_frame: float
    mean_job_seconds: float  # for a job whose length is unknown

    def job_seconds(self, frames: int | None) -> float:
        if frames is None or frames <= 0:
            return self.mean_job_seconds
        return self.overhead_seconds + frames * self.seconds_per_frame

    def remaining_seconds(
        self,
        *,
        frames_total: int | None,
        frames_done: int | None,
        expected_frames: int | None,
        seconds_running: float,
    ) -> float:
        """A running job's time left: its frames left at the lane's rate once its length is
        known (rendering), else its whole expected time less what it has run (preparing)."""
        if frames_total:
            return max(0, frames_total - (frames_done or 0)) * self.seconds_per_frame
        return max(0.0, self.job_seconds(expected_frames) - seconds_running)


def fit(samples: Sequence[tuple[int, float]]) -> LaneModel | None:
    """The model of (frames, seconds) samples; None without a usable one."""
    usable = [(float(f), float(s)) for f, s in samples if f > 0 and s > 0]
    if not usable:
        return None
    frames = sum(f for f, _ in usable)
    seconds = sum(s for _, s in usable)
    mean_job = seconds / len(usable)
    n = len(usable)
    mean_f, mean_s = frames / n, seconds / n
    spread = sum((f - mean_f) ** 2 for f, _ in usable)
    if n >= 2 and spread > 0:
        slope = sum((f - mean_f) * (s - mean_s) for f, s in usable) / spread
        intercept = mean_s - slope * mean_f
        if slope > 0 and intercept >= 0:
            return LaneModel(intercept, slope, mean_job)
    return LaneModel(0.0, seconds / frames, mean_job)


def start_after(
    busy_seconds: Sequence[float], ahead_seconds: Sequence[float], workers: int
) -> float:
    """Seconds from now until a worker is free for the job after `ahead_seconds` (in queue
    order), with `workers` workers of which those in `busy_seconds` are busy that long."""
    free = sorted(busy_seconds)[:workers]
    free += [0.0] * (max(1, workers) - len(free))
    heapq.heapify(free)
    for seconds in ahead_seconds:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return free[0]
