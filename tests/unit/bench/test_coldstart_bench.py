"""The cold-start benchmark (`bench/coldstart.py`) runs its fresh-process probes on CPU.

A smoke test of the script, not of its figures: each state's probe must run in its own
interpreter and report where the time went and which model libraries it imported. No timing is
asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.engine.weights import make_weights
from tests.support.bench_scripts import load_bench_script


@pytest.mark.slow  # two fresh interpreters loading the tiny engine (~12 s on 2 cores)
def test_eager_probes_fill_then_use_the_weight_cache(tmp_path: Path) -> None:
    # Given the script and tiny random models
    bench = load_bench_script("coldstart")
    tiny_models = make_weights(tmp_path / "models", tiny=True)
    # When it times an eager start from an empty weight cache, then from the filled one
    report = bench.main(
        [
            "--models", str(tiny_models.root), "--device", "cpu",
            "--states", "eager_uncached,eager_cached", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "result.json"),
        ]
    )  # fmt: skip
    uncached, cached = report["cold_starts"]
    # Then each probe ran in its own process and reports both clocks
    for probe in (uncached, cached):
        assert "error" not in probe, probe.get("error")
        for clock in ("from_interpreter_start", "from_after_import_torch"):
            assert 0 < probe[clock]["load_s"] <= probe[clock]["ready_s"]
        assert {"diffusers", "transformers"} <= set(probe["model_libraries_imported_at_ready"])
        assert probe["aot"] is False
    # and the first read the official files (writing the cache), the second the cache
    assert uncached["load_ms"]["unet"] > 0
    assert (tmp_path / "cache" / "unet.float32.safetensors").is_file()
    assert (tmp_path / "result.json").is_file()
