"""The speak benchmark's official-loop baseline (`bench/official_loop.py`).

The upstream checkout is not part of this repository: the end-to-end check runs only where
`MUSETALK_OFFICIAL` names one (the GPU run carries it); the pieces of our own run everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.bench_scripts import load_bench_script

ROOT = Path(__file__).resolve().parents[3]


def test_a_box_mask_lands_in_upstreams_crop_box_at_the_box() -> None:
    # Given a face box and its blend mask
    loop = load_bench_script("official_loop")
    box = (100, 40, 160, 112)  # 60 x 72: the crop box is 1.5 x the larger side, centred
    mask = np.arange(72 * 60, dtype=np.int64).reshape(72, 60).astype(np.uint8) | 1

    # When it is placed as get_image_prepare_material places its parsing mask
    placed, crop = loop.crop_box_mask(box, mask)

    # Then the crop box is upstream's (get_crop_box with expand 1.5) and the mask sits at the
    # box's offset inside it, zero everywhere else
    half = int(72 // 2 * 1.5)
    assert crop == [130 - half, 76 - half, 130 + half, 76 + half]
    assert placed.shape == (2 * half, 2 * half)
    x0, y0 = box[0] - crop[0], box[1] - crop[1]
    assert np.array_equal(placed[y0 : y0 + 72, x0 : x0 + 60], mask)
    assert int(placed.sum()) == int(mask.astype(np.int64).sum())


def test_every_row_gets_its_ratio_to_the_plain_path_and_the_official_loop() -> None:
    report = load_bench_script("speak_report")
    rows = [{"fps": 100.0}, {"fps": 450.0}]

    rated = report.with_ratios(rows, 100.0, {"fps": 120.0})

    assert [row["vs_plain"] for row in rated] == [1.0, 4.5]
    assert [row["vs_official"] for row in rated] == [0.83, 3.75]
    assert "vs_official" not in report.with_ratios([{"fps": 50.0}], 100.0, None)[0]


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("MUSETALK_OFFICIAL"), reason="MUSETALK_OFFICIAL names no checkout"
)
def test_upstreams_realtime_loop_renders_the_benchmark_avatar(tmp_path: Path) -> None:
    # Given upstream's checkout, tiny weights and the benchmark's avatar
    setup, loop = load_bench_script("speak_setup"), load_bench_script("official_loop")
    torch.set_num_threads(1)
    models = tmp_path / "models"
    setup.write_models(models, tiny=True)
    device = torch.device("cpu")
    engine = setup.load_engine(models, device, None)
    avatar = setup.prepared_avatar(engine, ROOT / "examples" / "media" / "musk.png")
    audio = setup.write_clip(ROOT / "examples" / "media" / "eng.wav", 0.4, tmp_path / "a.wav")

    # When upstream's Avatar.inference runs over 0.4 s of speech
    official = loop.OfficialLoop(Path(os.environ["MUSETALK_OFFICIAL"]), models, device, avatar)
    result = official.render(audio, avatar.fps)

    # Then it generated every frame (10 at 25 fps) and its frame thread blended them
    assert result["frames"] == 10
    assert official.avatar.idx == 9  # upstream's thread stops one short of video_len
    assert result["wall"] > result["audio"] > 0


def test_the_loops_stand_ins_for_upstreams_preparation_imports_build_without_a_checkout() -> None:
    # Given the official loop's module (upstream's code is not needed to build its shims)
    loop = load_bench_script("official_loop")

    # When it builds the stand-ins realtime_inference.py is imported with
    shims = loop._extra_shims(stub_preprocessing=True)

    # Then the face models' module is a stub that refuses to prepare
    preprocessing = shims["musetalk.utils.preprocessing"]
    with pytest.raises(RuntimeError, match="preparation is not run"):
        preprocessing.get_landmark_and_bbox([], 0)
    # and without stubbing, upstream's real preprocessing module would be imported
    assert "musetalk.utils.preprocessing" not in loop._extra_shims(stub_preprocessing=False)
