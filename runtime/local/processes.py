"""Child processes of local mode (the API gateway, the worker) and waiting on conditions.

Children run in their own session, so a Ctrl-C in the terminal reaches only local mode, which then
stops them in order (worker first, with SIGTERM, as ECS would) instead of all dying at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess  # nosec B404 (children are our own argv, no shell)
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO


class LocalModeError(Exception):
    """Local mode could not start or run something; the message says what and where to look."""


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it; a child binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ManagedProcess:
    """One child with its output in a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], *, env: dict[str, str], log_path: Path, cwd: Path
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = log_path.open("wb")
        self._process = subprocess.Popen(  # noqa: S603  # nosec B603 (argv is ours, no shell)
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited (and been polled), else None."""
        return self._process.returncode

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM, then SIGKILL after `grace_seconds`; returns the exit status."""
        if self.running():
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=grace_seconds)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):  # a second Ctrl-C: no grace
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._log.close()
        return int(self._process.returncode)

    def log_tail(self, lines: int = 25) -> str:
        with self.log_path.open(errors="replace") as stream:
            return "".join(deque(stream, maxlen=lines))

    def check_running(self) -> None:
        if not self.running():
            raise LocalModeError(
                f"{self.name} exited with status {self._process.returncode}; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_seconds: float,
    what: str,
    watch: Sequence[ManagedProcess] = (),
    poll_seconds: float = 0.2,
) -> None:
    """Poll `condition` until true; fail early if a watched process dies, or at the deadline."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        for process in watch:
            process.check_running()
        if time.monotonic() >= deadline:
            raise LocalModeError(f"timed out after {timeout_seconds:g} s waiting for {what}")
        time.sleep(poll_seconds)


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0
