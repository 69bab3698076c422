"""cuDNN's autotuner, switched on where the shapes are fixed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """cuDNN's autotuner on while inside (never switched off): it times the convolution
    algorithms once per new shape, so it pays where the same shapes come back (an avatar's
    frames, fixed batches). The flag is process-wide; the previous value comes back after."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
