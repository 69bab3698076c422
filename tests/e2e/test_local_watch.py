"""`bench/local_watch.py` on local mode: the live preview plays to its last frame (during the
render and after success), the ETA error is printed for a queue of jobs, and a webhook
redelivery reaches a receiver on this machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.e2e.test_local_demo import _SERVICE, REPO_ROOT, _missing


@pytest.mark.slow
@pytest.mark.skipif(
    bool(_missing(*_SERVICE)), reason=f"needs the API and worker: {_missing(*_SERVICE)} missing"
)
def test_a_watched_local_run_plays_every_frame_and_redelivers_locally() -> None:
    # When the scripted local run runs with a short queue
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "bench.local_watch", "--jobs", "3"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # Then it passed, and says so in figures
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    out = run.stdout
    live = re.search(r"opened while RENDERING: played (\d+) of (\d+) frames", out)
    after = re.search(r"opened after SUCCEEDED: played (\d+) of (\d+) frames", out)
    assert live is not None, out
    assert live[1] == live[2], out
    assert after is not None, out
    assert after[1] == after[2], out
    assert "median |error|: start" in out
    assert "redelivery reached the local receiver: True" in out
