"""The AOT loader probe (`bench/aot_loader_probe.py`): its crash handler must turn a native
crash into a readable native backtrace beside Python's, since that is what it is for. CPU only;
the package builds it runs are covered by tests/unit/engine/test_aot.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.bench_scripts import load_bench_script


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler")
def test_a_native_crash_leaves_both_stacks(tmp_path: Path) -> None:
    # Given the probe's crash handler, compiled here
    probe = load_bench_script("aot_loader_probe")
    shim = probe.build_shim(tmp_path)
    assert shim is not None
    # When a preloaded process with faulthandler on dereferences a null pointer in C
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", "import ctypes; ctypes.string_at(0)"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LD_PRELOAD": str(shim)},
    )
    # Then it still dies of SIGSEGV, and the excerpt holds the Python stack and the native
    # frames (with the library that faulted)
    assert done.returncode == -11
    excerpt = probe._crash_excerpt(done.stderr)
    assert excerpt.startswith("Fatal Python error: Segmentation fault")
    assert "string_at" in excerpt
    assert "*** native signal 11" in excerpt
    assert "_ctypes" in excerpt
