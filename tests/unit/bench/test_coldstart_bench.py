"""The cold-start benchmark (`bench/coldstart.py`) runs its fresh-process probes on CPU.

A smoke test of the script, not of its figures: each state's probe must run in its own
interpreter and report where the time went and which model libraries it imported. No timing is
asserted.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime.engine.random_weights import make_weights
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


def test_the_minimal_env_sees_torch_and_the_engine_requirements_only(tmp_path: Path) -> None:
    # Given the script
    bench = load_bench_script("coldstart")
    # When it builds its minimal environment (the worker image's view of the packages)
    env = bench.make_minimal_env(tmp_path / "minimal")
    python = env["python"]

    def imports(module: str) -> int:
        done = subprocess.run(
            [python, "-c", f"import {module}"],
            capture_output=True,
            check=False,
            env={**os.environ, "PYTHONPATH": ""},
        )
        return done.returncode

    # Then its interpreter imports torch and the model libraries, and not a package installed
    # beside them that the engine does not need (here: the test tools' moto)
    assert imports("torch") == 0
    assert imports("diffusers") == 0
    assert imports("moto") != 0
    assert env["distributions"] > 5


def test_slowest_imports_reads_python_importtime_output() -> None:
    # Given `-X importtime` lines (self and cumulative microseconds; nesting by indentation)
    bench = load_bench_script("coldstart")
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       200 |        200 |     torch._C",
            "import time:      1000 |    2500000 | torch",
            "import time:    900000 |     900000 |   diffusers.utils",
            "import time:     50000 |    1200000 | diffusers",
            "some other line",
        ]
    )
    # When it is summarised
    slowest = bench.slowest_imports(stderr, count=2)
    # Then top-level imports are ranked by cumulative time and modules by their own time
    assert slowest["top_level_cumulative_s"] == {"torch": 2.5, "diffusers": 1.2}
    assert list(slowest["self_s"]) == ["diffusers.utils", "diffusers"]
