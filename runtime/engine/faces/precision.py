"""Which floating-point type the face models (S3FD, DWPose, BiSeNet) run in.

Upstream runs them in fp32, and so do we by default. fp16 (or bf16) is an option for a GPU:
S3FD alone runs about 1.5x faster in fp16 on an H100, and with the device ops (GPU-bound)
the whole preparation took 19% less time, while with random weights a few near-tied boxes
moved. In reduced
precision the detection rule and the decoded boxes stay fp32 (see `s3fd.py`), so only the
networks' last bits change. On CPU fp16 is refused: half-precision convolutions there are slow.
"""

from __future__ import annotations

import torch

FACE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# What `FaceLocator.load` / `FaceParser.load` use on CUDA when given no dtype.
DEFAULT_CUDA_FACE_DTYPE = torch.float32


def default_face_dtype(device: torch.device) -> torch.dtype:
    return DEFAULT_CUDA_FACE_DTYPE if device.type == "cuda" else torch.float32


def check_face_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """`dtype` if the face models can run in it on `device`; ValueError naming it otherwise."""
    if dtype not in FACE_DTYPES:
        raise ValueError(f"face models run in float32, float16 or bfloat16, not {dtype}")
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError("float16 face models need a CUDA device (use float32 or bfloat16)")
    return dtype


def resolve_face_dtype(dtype: torch.dtype | None, device: torch.device) -> torch.dtype:
    return check_face_dtype(default_face_dtype(device) if dtype is None else dtype, device)
