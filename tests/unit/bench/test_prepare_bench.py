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
def test_prepare_benchmark_smoke_mode_agrees_batched_with_per_frame(tmp_path: Path) -> None:
    # Given the benchmark script in its CPU smoke mode (tiny VAE, two downscaled frames)
    bench = load_bench()
    torch.set_num_threads(1)
    out = tmp_path / "result.json"

    # When it prepares the clip both ways
    bench.main(["--smoke", "--device", "cpu", "--models", str(tmp_path / "m"), "--out", str(out)])

    # Then the report names the setup, times every stage of both paths ...
    report = json.loads(out.read_text())
    assert report["avatar"]["frames"] == 2
    assert report["weights"].startswith("random")
    for path in ("batched_ms_per_frame", "per_frame_ms_per_frame"):
        assert set(report[path]) == {"decode", "s3fd", "dwpose", "crop", "vae_encode", "parse"}
        assert all(ms > 0 for ms in report[path].values())
    assert report["speedup"] > 0
    # ... and the batched result equals the per-frame one
    agreement = report["agreement"]
    assert agreement["same_face_frames"] is True
    assert agreement["faces_batched"] == 2
    assert agreement["boxes_max_abs_diff"] == 0
    assert agreement["masks_identical"] == "2/2"
    assert agreement["latents_max_abs_diff"] < 1e-3
