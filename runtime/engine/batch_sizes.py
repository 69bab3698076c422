"""How many frames go through the UNet and the VAE decoder at once, from the card's memory.

`speak` picks its batch from the free memory (`batch_size_for_memory`); AOT packages are built
for one static batch from the card's whole memory (`static_batch_size`); a batch that still
runs out of memory is halved (`engine_contract.halve_on_oom`, with `is_oom` and `free_memory`).
"""

from __future__ import annotations

import numpy as np
import torch

CPU_BATCH_SIZE = 8  # the official offline batch size
MAX_GPU_BATCH_SIZE = 64
# Peak bytes per batch item of UNet + VAE decode at 256x256 (the decoder dominates). Estimated
# from the full-size models' peak memory on CPU in fp32 (about 240 MB per item at batch 4),
# halved for fp16, plus ~30% for the allocator and cuDNN workspaces; `bench/speak.py` measures
# 134 MB per frame up to batch 32 and 160 MB from 64 in fp16. OOM halving covers an estimate
# that proves too small.
GPU_BYTES_PER_ITEM = {torch.float16: 160 * 1024**2, torch.float32: 320 * 1024**2}
GPU_RESERVED_BYTES = 1024**3
# What the packaged models hold on the card before any batch (fp16 UNet ~1.7 GB, decoder,
# Whisper, and the face models): taken off the card's total for the AOT batch size.
AOT_MODELS_BYTES = 3 * 1024**3
# A compiled engine also keeps graphs at this batch size, for a job's last frames: padded to the
# full batch, the last batch cost up to a whole batch of GPU time for a few frames (a 30 s clip at
# 64: 18 padded frames, ~35 ms on an H100) and the tail after the GPU finished grew with it.
TAIL_BATCH_SIZE = 16


def batch_size_for_memory(free_bytes: int, dtype: torch.dtype) -> int:
    """Frames per UNet + decode batch that fit in `free_bytes`, keeping a reserve, 1..64."""
    per_item = GPU_BYTES_PER_ITEM.get(dtype, GPU_BYTES_PER_ITEM[torch.float32])
    return int(np.clip((free_bytes - GPU_RESERVED_BYTES) // per_item, 1, MAX_GPU_BATCH_SIZE))


def static_batch_size(device: torch.device, dtype: torch.dtype) -> int:
    """The batch AOT packages are built for: what the card's whole memory holds beside the
    models (its free memory would vary with what else runs, and so would the packages' key)."""
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    total = torch.cuda.get_device_properties(device).total_memory
    return batch_size_for_memory(total - AOT_MODELS_BYTES, dtype)


def is_oom(error: BaseException) -> bool:
    """What `halve_on_oom` halves a batch on: the GPU's out-of-memory error."""
    return isinstance(error, torch.cuda.OutOfMemoryError)


def free_memory(device: torch.device) -> None:
    """Give cached GPU memory back before a halved batch is tried again."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
