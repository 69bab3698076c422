"""The preparation benchmark (`bench/prepare.py`) runs end to end on CPU in its smoke mode.

A smoke test of the script, not of its figures: both paths must prepare the same clip and agree
on every result (the batched path is an optimisation, not a different answer). No timing is
asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.support.bench_scripts import load_bench_script


def load_bench() -> ModuleType:
    return load_bench_script("prepare")


@pytest.mark.slow
def test_prepare_benchmark_smoke_mode_agrees_each_variant_with_per_frame(tmp_path: Path) -> None:
    # Given the benchmark script in its CPU smoke mode (tiny VAE, two downscaled frames)
    bench = load_bench()
    torch.set_num_threads(1)
    out = tmp_path / "result.json"

    # When it prepares the clip both ways
    bench.main(["--smoke", "--device", "cpu", "--models", str(tmp_path / "m"), "--out", str(out)])

    # Then the report names the setup and times every stage of each path ...
    report = json.loads(out.read_text())
    assert report["avatar"]["frames"] == 2
    assert report["weights"].startswith("random")
    per_frame_stages = {"decode", "s3fd", "dwpose", "crop", "vae_encode", "parse"}
    assert all(report["per_frame"]["ms_per_frame"][s] > 0 for s in per_frame_stages)
    assert set(report["variants"]) == {"pipelined:float32", "sequential:float32"}
    pipelined = report["variants"]["pipelined:float32"]
    sequential = report["variants"]["sequential:float32"]
    assert all(pipelined["ms_per_frame"][s] > 0 for s in per_frame_stages - {"s3fd", "dwpose"})
    assert pipelined["ms_per_frame"]["locate"] > 0
    assert all(sequential["ms_per_frame"][s] > 0 for s in per_frame_stages)
    # ... and both variants' results equal the per-frame one (fp32 faces on both sides)
    for variant in (pipelined, sequential):
        assert variant["speedup"] > 0
        agreement = variant["agreement"]
        assert agreement["same_face_frames"] is True
        assert agreement["faces"] == 2
        assert agreement["s3fd_boxes_max_abs_diff_px"] == 0
        assert agreement["landmarks_max_abs_diff_px"] == 0
        assert agreement["boxes_max_abs_diff_px"] == 0
        assert agreement["boxes_differing"] == "0/2"
        assert agreement["masks_identical"] == "2/2"
        assert agreement["latents_max_abs_diff"] < 1e-3
