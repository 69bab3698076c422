"""DWPose through mmpose on CPU: the import stand-ins, checkpoint loading, batched landmarks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine.faces.dwpose import DWPose, read_checkpoint, rtmpose_wholebody_config
from runtime.engine.faces.mmlab_compat import StandInUsedError, import_mmpose

DWPOSE = Path("dwpose") / "dw-ll_ucoco_384.pth"


def test_given_no_torchvision_when_mmpose_imported_then_stand_ins_leave_no_trace() -> None:
    # Given this environment (CPU torch, mmcv-lite, no torchvision)
    # When
    standing_in = import_mmpose()
    # Then mmpose imported, and no fake module stays visible to other libraries
    assert "mmpose.apis" in sys.modules
    for name in standing_in:
        assert name not in sys.modules
    if "torchvision" in standing_in:
        assert importlib.util.find_spec("torchvision") is None


def test_given_stand_in_when_used_then_it_refuses_loudly() -> None:
    # Given mmpose's visualiser bound to the ToPILImage stand-in (only when torchvision is absent)
    if "torchvision" not in import_mmpose() and importlib.util.find_spec("torchvision"):
        pytest.skip("real torchvision installed")
    from mmpose.visualization import simcc_vis

    # When / Then
    with pytest.raises(StandInUsedError, match="stand-in"):
        simcc_vis.ToPILImage()


def test_given_official_config_facts_when_built_then_model_matches_rtmpose_l_wholebody() -> None:
    cfg = rtmpose_wholebody_config()
    assert cfg["model"]["head"]["out_channels"] == 133
    assert cfg["model"]["head"]["decoder"]["input_size"] == (288, 384)
    assert cfg["model"]["test_cfg"]["flip_test"] is True
    assert cfg["model"]["data_preprocessor"]["bgr_to_rgb"] is True


@pytest.mark.slow
def test_given_random_checkpoint_when_loaded_then_rtmpose_runs_batched_on_cpu(
    models_dir: Path, video_frames: list[np.ndarray], still_frame: np.ndarray, cpu: torch.device
) -> None:
    # Given the seeded random checkpoint (470 tensors, mmengine format)
    checkpoint = read_checkpoint(models_dir / DWPOSE)
    assert len(checkpoint["state_dict"]) == 470
    model = DWPose.load(models_dir / DWPOSE, cpu)
    # When two different frames run as one batch, and one of them alone
    batched = model.face_landmarks([video_frames[0], still_frame], batch_size=2)
    alone = model.face_landmarks([still_frame], batch_size=1)
    # Then 68 int32 (x, y) landmarks per frame, independent of batching
    assert batched.shape == (2, 68, 2)
    assert batched.dtype == np.int32
    np.testing.assert_array_equal(batched[1], alone[0])
    # and they sit around the whole-image box (padding 1.25, aspect 3:4) of each frame
    width = still_frame.shape[1]
    assert batched[1, :, 0].min() >= -0.125 * width - 1
    assert batched[1, :, 0].max() <= 1.125 * width + 1


def test_given_numpy_objects_in_meta_when_read_then_checkpoint_still_loads(tmp_path: Path) -> None:
    # Given a checkpoint like the released one, whose meta holds numpy objects
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"epoch": np.int64(270)}}, path)
    # When / Then (weights_only refuses it; the trusted-file fallback reads it)
    assert read_checkpoint(path)["meta"]["epoch"] == 270


def test_given_foreign_checkpoint_when_loaded_then_missing_parameters_are_named(
    tmp_path: Path, cpu: torch.device
) -> None:
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"backbone.stem.0.conv.weight": torch.ones(1)}}, path)
    with pytest.raises(ValueError, match="parameters missing"):
        DWPose.load(path, cpu)
