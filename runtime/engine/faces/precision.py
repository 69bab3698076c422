"""Which floating-point type the face models (S3FD, DWPose, BiSeNet) run in.

Upstream runs them in fp32. On a GPU, fp16 makes S3FD (VGG16 on the full frame) several times
faster; the detection rule and the decoded boxes stay in fp32 (see `s3fd.py`), so what changes
is only the last bits of each network's activations. bench/prepare.py measures how far boxes,
latents and masks move against the fp32 path (bench/results/). On CPU the models stay fp32:
half-precision convolutions there are slow, and bf16 is offered for completeness only.
"""

from __future__ import annotations

import torch

FACE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# What `FaceLocator.load` / `FaceParser.load` use when given no dtype.
DEFAULT_CUDA_FACE_DTYPE = torch.float16


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
