"""Workers of a running local stack: noticing that one died, and starting another one.

`up` keeps one worker; if it exits (a crash, an out-of-memory kill, a bug), jobs wait in their
queue until a worker runs again, so `up` says so at once, with the end of the worker's log and
the command that starts another. That command, `python -m runtime.local worker`, attaches a new
worker to the running stack: `up` writes the worker's environment (the emulator's endpoint and
dummy credentials, resource names, stage settings; no variable of your shell) to
`<work dir>/worker-env.json`, and the command runs `python -m runtime.worker` with it, in the
foreground, with its own health port. Several may run side by side, as tasks of a fleet do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from runtime.common.names import EnvVar
from runtime.local.processes import LocalModeError, ManagedProcess, free_port

WORKER_ENV_FILE = "worker-env.json"


def attach_command(work_dir: Path) -> str:
    return f"python -m runtime.local worker --work-dir {work_dir}"


def save_worker_env(work_dir: Path, env: dict[str, str]) -> Path:
    """Write the stack's worker variables for `attach_command` (owner-only: it names the
    emulator's endpoint and credentials)."""
    path = work_dir / WORKER_ENV_FILE
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(env, file, indent=1, sort_keys=True)
    return path


def attached_worker_env(work_dir: Path, host: dict[str, str]) -> dict[str, str]:
    """The environment of another worker for the stack running from `work_dir`: the host's
    variables, then the stack's (which win), with a health port of its own."""
    path = work_dir / WORKER_ENV_FILE
    if not path.is_file():
        raise LocalModeError(
            f"no running local stack found ({path} is missing): start one with "
            "`python -m runtime.local up` (with the same --work-dir)"
        )
    saved = json.loads(path.read_text())
    return {**host, **saved, EnvVar.HEALTH_PORT.value: str(free_port())}


def run_attached_worker(work_dir: Path) -> int:
    """Replace this process with a worker attached to the running stack."""
    env = attached_worker_env(work_dir, dict(os.environ))
    print(f"==> worker attached to the local stack of {work_dir}", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, "-m", "runtime.worker"], env)  # noqa: S606  # nosec B606
    return 0  # not reached


class WorkerWatch:
    """Tells, once, that the stack's worker has exited (and reaps it, so no zombie is left)."""

    def __init__(self, worker: ManagedProcess, work_dir: Path) -> None:
        self._worker = worker
        self._work_dir = work_dir
        self._told = False

    def check(self) -> str | None:
        """The report of the worker's death the first time it is seen; else None."""
        if self._told or self._worker.running():  # running() polls, which reaps an exited child
            return None
        self._told = True
        return (
            f"the worker (pid {self._worker.pid}) exited with status {self._worker.returncode}; "
            "jobs wait in their queue until a worker runs. Last lines of "
            f"{self._worker.log_path}:\n{self._worker.log_tail()}\n"
            f"Start another worker in another shell:\n  {attach_command(self._work_dir)}"
        )
