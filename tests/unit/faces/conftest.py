"""Session fixtures: full-size random face/sync checkpoints written once, sample frames."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from runtime.engine.faces.random_weights import (
    write_random_bisenet,
    write_random_dwpose,
    write_random_s3fd,
)
from runtime.engine.sync.random_weights import write_random_syncnet

MEDIA = Path(__file__).resolve().parents[3] / "examples" / "media"
SEED = 0


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_random_s3fd(root / "s3fd" / "s3fd-619a316812.pth", SEED)
    write_random_dwpose(root / "dwpose" / "dw-ll_ucoco_384.pth", SEED)
    write_random_bisenet(root / "face-parse-bisent", SEED)
    write_random_syncnet(root / "syncnet" / "latentsync_syncnet.pt", SEED, tiny=True)
    return root


@pytest.fixture(scope="session")
def video_frames() -> list[np.ndarray]:
    """Three BGR frames of the sample video, a second apart (1216x704)."""
    with av.open(str(MEDIA / "yongen.mp4")) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    return [frames[i] for i in (0, 25, 50)]


@pytest.fixture(scope="session")
def still_frame() -> np.ndarray:
    frame = cv2.imread(str(MEDIA / "musk.png"))
    assert frame is not None
    return frame


@pytest.fixture(scope="session")
def cpu() -> torch.device:
    return torch.device("cpu")
