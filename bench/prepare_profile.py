"""Where a preparation spends its time: the threads' most sampled lines and torch.profiler's
top operators, for `--profile`."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import FrameType

from bench.prepare_paths import ours
from runtime.engine.engine import MuseTalkEngine

# Innermost frames of a thread that waits for work or for another thread: not sampled.
_IDLE = ("threading.py:wait", "thread.py:_worker", "hashlib", "fileio.py:file_sha256")


class ThreadSampler:
    """Where each Python thread is, sampled every few milliseconds (a poor man's `py-spy`):
    counts of (thread, innermost frame of ours or a library's) while a run is sampled."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        names: dict[int | None, str] = {}
        while not self._stop.wait(self.interval_s):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == self._thread.ident:
                    continue
                stack: list[str] = []
                inner: FrameType | None = frame
                while inner is not None and len(stack) < 3:
                    code = inner.f_code
                    stack.append(f"{Path(code.co_filename).name}:{code.co_name}:{inner.f_lineno}")
                    inner = inner.f_back
                if any(idle in stack[0] for idle in _IDLE):
                    continue
                key = f"{names.get(ident, ident)} | " + " < ".join(stack)
                self.counts[key] = self.counts.get(key, 0) + 1

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def top(self, n: int = 60) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda kv: -kv[1])[:n]


def profile(engine: MuseTalkEngine, avatar: Path, mode: str, ops: str, out: Path) -> None:
    """One preparation of `avatar` in `mode` under torch.profiler and the thread sampler:
    the top operators by host and by GPU time and the threads' most sampled lines, to `out`."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU]
    if engine.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with ThreadSampler() as sampler:
        ours(engine, avatar, mode, ops)
    with torch_profile(activities=activities) as prof:
        ours(engine, avatar, mode, ops)
    lines = [f"# {mode}, {ops} ops: thread samples (5 ms), most frequent first"]
    lines += [f"{count:6d}  {key}" for key, count in sampler.top()]
    for sort in ("self_cpu_time_total", "self_device_time_total"):
        lines += ["", f"# torch.profiler, sorted by {sort}"]
        try:
            lines.append(prof.key_averages().table(sort_by=sort, row_limit=30))
        except Exception as error:  # a sort key this build lacks
            lines.append(f"({error})")
    out.write_text("\n".join(lines) + "\n")
