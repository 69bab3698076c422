"""When `up`'s worker dies, `up` says so at once (and how to start another), and a worker started
with `python -m runtime.local worker` takes the jobs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.local.media import EXAMPLES_DIR, trim_audio
from tests.e2e.test_local_demo import _SERVICE, REPO_ROOT, _missing
from tests.e2e.test_local_up import UP, _cli, _read_exports, small_engine_setup
from tests.support.waiting import eventually


@pytest.mark.slow
@pytest.mark.skipif(
    bool(_missing(*_SERVICE)), reason=f"needs the API and worker: {_missing(*_SERVICE)} missing"
)
def test_a_dead_worker_is_reported_and_another_one_attaches(tmp_path: Path) -> None:
    # Given local mode running with the small test engine
    models, env = small_engine_setup(tmp_path)
    work = tmp_path / "work"
    stderr_log = tmp_path / "up.stderr"
    with stderr_log.open("w") as stderr:
        up = subprocess.Popen(
            [*UP, "--models", str(models), "--work-dir", str(work)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        second: subprocess.Popen[bytes] | None = None
        try:
            exports = _read_exports(up)
            (pid,) = (
                int(p) for p in re.findall(r"worker started, pid (\d+)", stderr_log.read_text())
            )

            # When its worker is killed (as the kernel's OOM killer would)
            os.kill(pid, signal.SIGKILL)

            # Then `up` reports it with the command that starts another
            eventually(
                lambda: "exited with status -9" in stderr_log.read_text(),
                timeout=20,
                what="up to report the dead worker",
            )
            assert f"python -m runtime.local worker --work-dir {work}" in stderr_log.read_text()

            # When another worker is started that way, a submitted job is rendered
            with (tmp_path / "second.log").open("wb") as log:
                second = subprocess.Popen(
                    [sys.executable, "-m", "runtime.local", "worker", "--work-dir", str(work)],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            speech = trim_audio(EXAMPLES_DIR / "yongen.wav", tmp_path / "speech.wav", 1.0)
            submitted = _cli(
                {**env, **exports},
                "submit",
                str(EXAMPLES_DIR / "musk.png"),
                str(speech),
                "--wait",
                "--poll-seconds",
                "0.5",
                "--timeout",
                "90",
            )
            assert submitted["status"] == "SUCCEEDED"
        finally:
            if second is not None:
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=60)
            up.send_signal(signal.SIGINT)
            up.wait(timeout=60)
    # And `up` removed the attach file when it stopped
    assert not (work / "worker-env.json").exists()
