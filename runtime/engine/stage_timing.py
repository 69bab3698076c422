"""Where the engine's stage times (`load_timings_ms`, `Rendered.timings_ms`) come from."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def timed(
    timings: dict[str, float], stage: str, device: torch.device | None = None
) -> Iterator[None]:
    """Add the stage's wall time (ms) to `timings`; syncs CUDA so GPU work is counted."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000


class StageMarks:
    """Stage boundaries of one batch: CUDA events on a GPU (read once the batch is done, so
    timing never makes the host wait between stages), the wall clock on the CPU (where every
    stage runs to completion when called)."""

    def __init__(self, device: torch.device) -> None:
        self._cuda = device.type == "cuda"
        self._marks: list[tuple[str, torch.cuda.Event | float]] = []

    def begin(self) -> None:
        self._marks.append(("", self._now()))

    def end(self, stage: str) -> None:
        self._marks.append((stage, self._now()))

    def wait(self) -> None:
        last = self._marks[-1][1]
        if isinstance(last, torch.cuda.Event):
            last.synchronize()

    def add_to(self, timings: dict[str, float]) -> None:
        for (_, start), (stage, end) in itertools.pairwise(self._marks):
            if isinstance(start, torch.cuda.Event) and isinstance(end, torch.cuda.Event):
                elapsed = start.elapsed_time(end)
            else:
                elapsed = (float(end) - float(start)) * 1000  # type: ignore[arg-type]
            timings[stage] = timings.get(stage, 0.0) + elapsed

    def _now(self) -> torch.cuda.Event | float:
        if not self._cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
