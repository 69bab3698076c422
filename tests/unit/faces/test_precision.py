"""The face models' reduced-precision option (`faces.precision`): which dtypes are accepted where,
and what stays fp32 inside the models so that reduced precision only moves the last bits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine.faces import FaceLocator, FaceParser
from runtime.engine.faces.dwpose import DWPose
from runtime.engine.faces.precision import check_face_dtype, default_face_dtype
from runtime.engine.faces.s3fd import L2Norm, S3FDNet

DWPOSE = Path("dwpose/dw-ll_ucoco_384.pth")
CUDA = torch.device("cuda")


def test_given_devices_then_fp32_is_the_default_as_upstream(cpu: torch.device) -> None:
    assert default_face_dtype(CUDA) is torch.float32
    assert default_face_dtype(cpu) is torch.float32


@pytest.mark.parametrize(
    ("dtype", "device", "message"),
    [
        (torch.float64, "cpu", "float32, float16 or bfloat16"),
        (torch.int8, "cuda", "float32, float16 or bfloat16"),
        (torch.float16, "cpu", "float16 face models need a CUDA device"),
    ],
)
def test_given_an_unusable_dtype_when_checked_then_it_is_refused_by_name(
    dtype: torch.dtype, device: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_face_dtype(dtype, torch.device(device))


def test_given_fp16_on_cpu_when_loading_the_locator_then_it_is_refused_before_any_file(
    tmp_path: Path, cpu: torch.device
) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        FaceLocator.load(tmp_path, cpu, torch.float16)
    with pytest.raises(ValueError, match="CUDA"):
        FaceParser.load(tmp_path, cpu, torch.float16)


def test_given_fp16_activations_whose_squares_overflow_when_l2_normalised_then_finite() -> None:
    # Given VGG-sized activations (300: the square is past fp16's 65504)
    norm = L2Norm(4, scale=10)
    x = torch.full((1, 4, 2, 2), 300.0)
    # When normalised in fp16 and in fp32
    half, full = norm.half()(x.half()), norm.float()(x)
    # Then the fp16 result is finite, fp16, and the fp32 one rounded
    assert half.dtype is torch.float16
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), full, rtol=1e-3, atol=1e-3)


def test_given_a_bf16_detector_when_run_then_scores_and_boxes_come_back_in_fp32() -> None:
    # Given the S3FD network in bf16 (CPU supports it; the GPU default is fp16)
    torch.manual_seed(0)
    net = S3FDNet().to(torch.bfloat16).eval()
    # When a small frame runs through it
    with torch.inference_mode():
        heads = net(torch.randn(1, 3, 64, 96, dtype=torch.bfloat16))
    # Then every head's face probability and box regression is fp32 (the answer pick sees no
    # extra ties from bf16 rounding)
    for prob, loc in heads:
        assert prob.dtype is torch.float32
        assert loc.dtype is torch.float32


def test_given_bf16_dwpose_when_run_then_mmpose_decodes_int_landmarks(
    models_dir: Path, still_frame: np.ndarray, cpu: torch.device
) -> None:
    # Given the random DWPose checkpoint under bf16 autocast
    model = DWPose.load(models_dir / DWPOSE, cpu, torch.bfloat16)
    # When it locates the still frame's landmarks
    got = model.face_landmarks([still_frame], batch_size=1)
    # Then mmpose's numpy decoding got fp32 and answered 68 int landmarks
    assert got.shape == (1, 68, 2)
    assert got.dtype == np.int32
