"""`python -m runtime.local up` serves the CLI as a deployed stack would, and Ctrl-C stops all
of it: the worker, the API gateway and the emulator."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli.errors import ExitCode
from runtime.local.media import EXAMPLES_DIR, trim_audio
from runtime.local.processes import port_open
from tests.e2e.test_local_demo import _SERVICE, REPO_ROOT, _missing

STOP_TIMEOUT_SECONDS = 60
UP = (sys.executable, "-m", "runtime.local", "up")


def small_engine_setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A models dir and the environment that make `up` run the small test engine."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "weights.bin").write_bytes(b"small engine")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "MUSETALK_ENGINE_FACTORY": "tests.support.small_engine:load",
    }
    return models, env


@pytest.mark.slow
@pytest.mark.skipif(
    bool(_missing(*_SERVICE)), reason=f"needs the API and worker: {_missing(*_SERVICE)} missing"
)
def test_the_cli_drives_local_mode_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    # Given local mode running with the small test engine
    models, env = small_engine_setup(tmp_path)
    stderr_log = tmp_path / "up.stderr"
    with stderr_log.open("w") as stderr:
        up = subprocess.Popen(
            [*UP, "--models", str(models), "--work-dir", str(tmp_path / "work")],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            exports = _read_exports(up)

            # When a user points the CLI at it through the environment and submits a job
            speech = trim_audio(EXAMPLES_DIR / "yongen.wav", tmp_path / "speech.wav", 1.0)
            cli_env = {**env, **exports}
            submitted = _cli(
                cli_env,
                "submit",
                str(EXAMPLES_DIR / "musk.png"),
                str(speech),
                "--wait",
                "--download",
                str(tmp_path / "result.mp4"),
                "--poll-seconds",
                "0.5",
                "--timeout",
                "60",
            )
            avatars = _cli(cli_env, "avatars")

            # Then the job succeeded, the mp4 is downloaded and the avatar is listed
            assert submitted["status"] == "SUCCEEDED"
            assert Path(submitted["downloaded_to"]).stat().st_size > 0
            assert [a["avatar_id"] for a in avatars["avatars"]] == [submitted["avatar_id"]]
        finally:
            # When the user presses Ctrl-C
            up.send_signal(signal.SIGINT)
            code = up.wait(timeout=STOP_TIMEOUT_SECONDS)

    # Then local mode exits 130 and nothing it started is left running
    assert code == ExitCode.INTERRUPTED
    log = stderr_log.read_text()
    (worker_pid,) = (int(pid) for pid in re.findall(r"worker started, pid (\d+)", log))
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
    gateway_port = int(exports["MUSETALK_API_URL"].rsplit(":", 1)[1])
    assert not port_open(gateway_port)


def _read_exports(up: subprocess.Popen[str]) -> dict[str, str]:
    """The `export NAME=value` lines `up` prints once everything is running."""
    assert up.stdout is not None
    exports: dict[str, str] = {}
    for line in up.stdout:  # ends at EOF if `up` dies, so this cannot hang on a crash
        match = re.match(r"\s*export (MUSETALK_API_\w+)=(\S+)", line)
        if match:
            exports[match.group(1)] = match.group(2)
        if len(exports) == 2:
            return exports
    raise AssertionError(f"local mode exited with {up.wait()} before it was ready")


def _cli(env: dict[str, str], *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "--json", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document
