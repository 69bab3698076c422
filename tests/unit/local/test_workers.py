"""A local worker that dies is reported once (with its log's end and how to start another) and
reaped; another worker attaches to the running stack through the environment `up` saved."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from runtime.common.names import EnvVar
from runtime.local.processes import LocalModeError, ManagedProcess
from runtime.local.workers import (
    WORKER_ENV_FILE,
    WorkerWatch,
    attached_worker_env,
    save_worker_env,
)
from tests.support.waiting import eventually


def _state(pid: int) -> str | None:
    """The process's state letter in /proc (Z: a zombie), or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    return next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))


def test_a_dead_worker_is_reported_once_with_its_log_and_reaped(tmp_path: Path) -> None:
    # Given a "worker" that crashes right away
    worker = ManagedProcess(
        "worker",
        [sys.executable, "-c", "import sys; print('CUDA error: boom'); sys.exit(3)"],
        env={},
        log_path=tmp_path / "logs" / "worker.log",
        cwd=tmp_path,
    )
    watch = WorkerWatch(worker, tmp_path)
    eventually(lambda: _state(worker.pid) in (None, "Z"), timeout=10, what="the child to exit")

    # When `up` checks on it
    report = watch.check()

    # Then it says the worker died, why (its status and log), and how to start another
    assert report is not None
    assert f"pid {worker.pid}" in report
    assert "status 3" in report
    assert "CUDA error: boom" in report
    assert f"python -m runtime.local worker --work-dir {tmp_path}" in report
    # And it says so once, and leaves no zombie behind
    assert watch.check() is None
    assert _state(worker.pid) is None
    worker.stop(1)


def test_another_worker_attaches_with_the_saved_environment_and_its_own_port(
    tmp_path: Path,
) -> None:
    # Given no running stack, attaching says how to start one
    with pytest.raises(LocalModeError, match=r"runtime\.local up"):
        attached_worker_env(tmp_path, {})
    # Given the environment `up` saved for its worker
    saved = {"MUSETALK_JOBS_TABLE": "musetalk-dev-jobs", EnvVar.HEALTH_PORT.value: "1"}
    path = save_worker_env(tmp_path, saved)
    assert path == tmp_path / WORKER_ENV_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it names the emulator's credentials
    # When another worker's environment is built from the shell's
    env = attached_worker_env(tmp_path, {"HOME": "/home/me", "MUSETALK_JOBS_TABLE": "other"})
    # Then the stack's variables win, the shell's others stay, and the health port is its own
    assert env["MUSETALK_JOBS_TABLE"] == "musetalk-dev-jobs"
    assert env["HOME"] == "/home/me"
    assert env[EnvVar.HEALTH_PORT.value] != "1"
