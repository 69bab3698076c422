"""`bench/decoder_fold.py` runs on CPU with the tiny VAE and reports what the GPU run reports."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.bench_scripts import load_bench_script


def test_the_fold_benchmark_times_every_upsampler_and_checks_the_decoder(tmp_path: Path) -> None:
    bench = load_bench_script("decoder_fold")
    out = tmp_path / "fold.json"
    report = bench.main(["--tiny", "--batch", "1", "--runs", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    assert report["folded_modules"] == len(report["layers"]) == 3
    assert all(row["max_abs_diff_folded"] < 1e-4 for row in report["layers"])
    assert all(row["max_abs_diff_four"] < 1e-4 for row in report["layers"])
    assert report["psnr_folded_vs_diffusers_db"] > 60
