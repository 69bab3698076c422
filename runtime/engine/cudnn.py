"""cuDNN's autotuner, switched on where the shapes are fixed, and the padding that fixes them."""

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


def padded_batch(batch: torch.Tensor, size: int) -> torch.Tensor:
    """`batch` with zero rows appended up to `size` rows while the autotuner is on (unchanged
    otherwise, or when full): a short last batch would be a new shape whose every layer cuDNN
    times again, seconds per avatar, since the last chunk's size differs from avatar to avatar.
    The caller keeps the first `len(batch)` rows of the result."""
    short = size - len(batch)
    if short <= 0 or not torch.backends.cudnn.benchmark:
        return batch
    return torch.cat([batch, batch.new_zeros((short, *batch.shape[1:]))])
