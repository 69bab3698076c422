"""Per-frame host work (OpenCV, PIL, numpy) spread over the CPU cores during preparation.

On a GPU machine the networks take milliseconds per frame in batches, and the per-frame host
steps around them (crops, resizes, the mask morphology, the pose pipeline's affine warp) become
the bottleneck if they run one after another on one core. These libraries release the GIL in
their pixel loops, so a thread pool is enough; results keep the input order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

MAX_HOST_THREADS = 8  # beyond this the GPU, not the host, bounds preparation


def host_threads() -> int:
    """Threads for host work: the cores this process may use, at most MAX_HOST_THREADS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_HOST_THREADS))


def host_map(fn: Callable[[In], Out], items: Sequence[In]) -> list[Out]:
    """`[fn(x) for x in items]`, on a thread pool when there is more than one item and core."""
    workers = min(len(items), host_threads())
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(workers, thread_name_prefix="prepare-host") as pool:
        return list(pool.map(fn, items))
