"""Following a job: poll its status until it is final, drawing a progress bar on a terminal.

Polling (not SNS) because a CLI user has no subscription; the API's status route is the contract.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from runtime.cli.client import ApiClient
from runtime.cli.errors import CliError, ExitCode
from runtime.common.jobs import FINAL_STATUSES, JobStatus

BAR_WIDTH = 30


def wait_for_job(
    client: ApiClient,
    job_id: str,
    *,
    poll_seconds: float,
    timeout_seconds: float | None,
    on_update: Callable[[dict[str, Any]], None] = lambda _job: None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The job's final state; raises CliError(TIMEOUT) if `timeout_seconds` pass first."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        job = client.get_job(job_id)
        on_update(job)
        if is_final(job):
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise CliError(
                ExitCode.TIMEOUT,
                f"job {job_id} still {job.get('status')} after {timeout_seconds:g} s; "
                f"it keeps running: `musetalk wait {job_id}` follows it again",
            )
        sleep(poll_seconds)


def is_final(job: dict[str, Any]) -> bool:
    return str(job.get("status")) in {status.value for status in FINAL_STATUSES}


class ProgressBar:
    """Redraws one line on a terminal; elsewhere (logs, CI) prints a line per status change and
    per tenth of the render done, so a long render shows it advancing in a log too.

    The fraction is the job's `progress` or `frames_done / frames_total`, whichever is further
    (the worker records frames as they are composed and segments as they land), and the bar never
    moves back while it follows one job.
    """

    LOG_STEP = 0.1

    def __init__(self, stream: TextIO, *, label: str = "") -> None:
        self._stream = stream
        self._label = label
        self._interactive = stream.isatty()
        self._last_status: str | None = None
        self._shown = 0.0  # furthest fraction drawn
        self._logged = 0.0  # fraction of the last line printed in a log

    def update(self, job: dict[str, Any]) -> None:
        status = str(job.get("status"))
        self._shown = max(self._shown, progress_fraction(job))
        if self._interactive:
            self._stream.write("\r" + self.line(job))
            if is_final(job):
                self._stream.write("\n")
            self._stream.flush()
        elif status != self._last_status or self._shown - self._logged >= self.LOG_STEP:
            self._stream.write(self.line(job) + "\n")
            self._stream.flush()
            self._logged = self._shown
        self._last_status = status

    def line(self, job: dict[str, Any]) -> str:
        fraction = max(self._shown, progress_fraction(job))
        filled = round(fraction * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        frames = ""
        if job.get("frames_total"):
            frames = f"  frames {job.get('frames_done') or 0}/{job['frames_total']}"
        label = f"{self._label} " if self._label else ""
        return f"{label}[{bar}] {fraction:4.0%}  {job.get('status', '?'):<10}{frames}"


def progress_fraction(job: dict[str, Any]) -> float:
    if job.get("status") == JobStatus.SUCCEEDED:
        return 1.0
    return max(_clamped(job.get("progress")), _frames_fraction(job))


def _frames_fraction(job: dict[str, Any]) -> float:
    try:
        return _clamped(int(job.get("frames_done") or 0) / int(job.get("frames_total") or 0))
    except (TypeError, ValueError, ZeroDivisionError):
        return 0.0


def _clamped(value: Any) -> float:
    try:
        number = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return min(max(number, 0.0), 1.0)
