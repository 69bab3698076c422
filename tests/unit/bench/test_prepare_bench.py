"""The preparation benchmark (`bench/prepare.py`) runs end to end on CPU in its smoke mode.

A smoke test of the script, not of its figures: both paths must prepare the same clip and agree
on every result (the batched path is an optimisation, not a different answer). No timing is
asserted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.support.bench_scripts import load_bench_script


def load_bench() -> ModuleType:
    return load_bench_script("prepare")


def test_variants_name_mode_dtype_ops_and_flags_with_device_ops_by_default() -> None:
    bench = load_bench_script("prepare_variants")
    none = frozenset()
    assert bench.parse_variant("pipelined:float16") == ("pipelined", torch.float16, "device", none)
    assert bench.parse_variant("sequential:float32:host") == (
        "sequential",
        torch.float32,
        "host",
        none,
    )
    serial = bench.parse_variant("serial:float16:device+compile+onepass")
    assert serial == ("serial", torch.float16, "device", frozenset({"onepass", "compile"}))
    # the name lists the flags in one order, whatever order they were given in
    assert bench.variant_name(*serial) == "serial:float16:device+onepass+compile"
    for wrong in ("pipelined:float32:gpu", "serial:float32:device+fast", "overlap:float32"):
        with pytest.raises(argparse.ArgumentTypeError, match="MODE:DTYPE"):
            bench.parse_variant(wrong)


@pytest.mark.slow
def test_prepare_benchmark_smoke_mode_agrees_each_variant_with_per_frame(tmp_path: Path) -> None:
    # Given the benchmark script in its CPU smoke mode (tiny VAE, two downscaled frames)
    bench = load_bench()
    torch.set_num_threads(1)
    out = tmp_path / "result.json"

    # When it prepares the clip per frame and in four variants: pipelined and sequential with
    # the host pre/post-processing (the CPU default), pipelined with the device ops, and serial
    # (decoding ahead) with the device ops and every flag (compiled with Dynamo only on CPU)
    variants = (
        "pipelined:float32:host,sequential:float32:host,pipelined:float32:device,"
        "serial:float32:device+onepass+vae+compile"
    )
    models = str(tmp_path / "m")
    bench.main(
        [
            "--smoke",
            "--device",
            "cpu",
            "--models",
            models,
            "--variants",
            variants,
            "--out",
            str(out),
        ]
    )

    # Then the report names the setup and times every stage of each path ...
    report = json.loads(out.read_text())
    assert report["avatar"]["frames"] == 2
    assert report["weights"].startswith("random")
    per_frame_stages = {"decode", "s3fd", "dwpose", "crop", "vae_encode", "parse"}
    assert all(report["per_frame"]["ms_per_frame"][s] > 0 for s in per_frame_stages)
    assert set(report["variants"]) == set(variants.split(","))
    pipelined = report["variants"]["pipelined:float32:host"]
    sequential = report["variants"]["sequential:float32:host"]
    on_device = report["variants"]["pipelined:float32:device"]
    fast = report["variants"]["serial:float32:device+onepass+vae+compile"]
    assert report["failed"] == {}
    assert fast["warmup_s"] > 0
    assert fast["ms_per_frame"]["decode"] > 0
    assert fast["ms_per_frame"]["s3fd"] > 0
    for overlapped in (pipelined, on_device):
        assert all(overlapped["ms_per_frame"][s] > 0 for s in per_frame_stages - {"s3fd", "dwpose"})
        assert overlapped["ms_per_frame"]["locate"] > 0
    assert all(sequential["ms_per_frame"][s] > 0 for s in per_frame_stages)
    # ... every variant finds the per-frame path's faces, boxes and landmarks exactly ...
    for variant in (pipelined, sequential, on_device, fast):
        assert variant["speedup"] > 0
        agreement = variant["agreement"]
        assert agreement["same_face_frames"] is True
        assert agreement["faces"] == 2
        assert agreement["s3fd_boxes_max_abs_diff_px"] == 0
        assert agreement["landmarks_max_abs_diff_px"] == 0
        assert agreement["boxes_max_abs_diff_px"] == 0
        assert agreement["boxes_differing"] == "0/2"
        assert agreement["latents_max_abs_diff"] < 1e-3
    # ... the host variants its masks exactly, the device ops within the resizes' rounding
    assert pipelined["agreement"]["masks_identical"] == "2/2"
    assert sequential["agreement"]["masks_identical"] == "2/2"
    assert on_device["agreement"]["masks_mean_abs_diff"] < 0.5
    assert fast["agreement"]["masks_mean_abs_diff"] < 0.5
