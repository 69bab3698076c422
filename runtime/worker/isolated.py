"""The worker's input checks in a child process with a memory and a time limit, so that a native
crash or a runaway allocation in a decoder costs one job, not the worker.

The checks decode the whole audio and probe the avatar (`inputs.check_audio`, `check_avatar`)
before the engine decodes the same bytes in the worker's own process: a file that crashes FFmpeg
(a SIGSEGV, as planar audio of 8+ channels did in PyAV's conversion) or allocates without
bound crashes or exhausts the child, and the job fails `INVALID_MEDIA` at once. The child is
started once (a fresh interpreter, so it inherits none of the worker's state: CUDA, threads)
and serves every job over a socket pair; a crash or a timeout replaces it. The cost per job is
the round trip to a warm child (docs/threat-model.md, "Hostile media").
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess  # nosec B404 (runs our own module, argv only, no shell)
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from runtime.common.jobs import ErrorCode
from runtime.worker.media_errors import MediaError

T = TypeVar("T")
GIB = 1024**3


class IsolatedChecks:
    """Runs picklable check functions in one long-lived child; `MediaError`s come back as
    they were raised, a crash or a timeout becomes `INVALID_MEDIA`."""

    def __init__(self, *, timeout_seconds: float = 120.0, memory_bytes: int = 4 * GIB) -> None:
        self.timeout_seconds = timeout_seconds
        self.memory_bytes = memory_bytes
        self._lock = threading.Lock()  # one check at a time: the child serves one request
        self._child: tuple[subprocess.Popen[bytes], Connection] | None = None

    def run(self, check: Callable[..., T], *args: Any) -> T:
        with self._lock:
            process, conn = self._started()
            conn.send((check, args))
            try:
                if not conn.poll(self.timeout_seconds):
                    self._stop()
                    raise MediaError(
                        ErrorCode.INVALID_MEDIA,
                        f"the input was not checked within {self.timeout_seconds:.0f} s",
                    )
                kind, value = conn.recv()
            except (EOFError, ConnectionResetError):  # the child died mid-check
                code = process.wait(5)
                self._stop()
                raise MediaError(
                    ErrorCode.INVALID_MEDIA,
                    f"the input crashed its decoder (child exit {code})",
                ) from None
        if kind == "refused":
            code_value, message = value
            raise MediaError(ErrorCode(code_value), message)
        if kind == "failed":
            raise RuntimeError(f"the input check failed: {value}")
        return value

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _started(self) -> tuple[subprocess.Popen[bytes], Connection]:
        if self._child is None or self._child[0].poll() is not None:
            self._stop()
            ours, theirs = socket.socketpair()
            process = subprocess.Popen(  # noqa: S603  # nosec B603 (our own module, no shell)
                [sys.executable, "-m", __name__, str(theirs.fileno()), str(self.memory_bytes)],
                pass_fds=[theirs.fileno()],
                env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)},
            )
            theirs.close()
            self._child = (process, Connection(ours.detach()))
        return self._child

    def _stop(self) -> None:
        if self._child is None:
            return
        process, conn = self._child
        self._child = None
        process.kill()
        process.wait(5)
        conn.close()


def _serve(conn: Connection, memory_bytes: int) -> None:
    """The child's loop: run each check, send back its result or its refusal."""
    import runtime.worker.inputs  # noqa: F401  # imported before the limit: imports map memory

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        try:
            check, args = conn.recv()
        except EOFError:
            return
        try:
            reply: tuple[str, Any] = ("ok", check(*args))
        except MediaError as error:  # sent as values: EngineError does not unpickle
            reply = ("refused", (error.code.value, error.message))
        except MemoryError:
            reply = ("refused", (ErrorCode.MEDIA_TOO_LARGE.value, "the input exhausted memory"))
        except Exception as error:  # the parent raises it as a transient failure
            reply = ("failed", f"{type(error).__name__}: {error}")
        conn.send(reply)


_shared: IsolatedChecks | None = None


def shared_checks() -> IsolatedChecks:
    """The worker's one checker (one child per worker process, started on first use)."""
    global _shared  # a process-wide child, like the engine
    if _shared is None:
        _shared = IsolatedChecks()
    return _shared


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])), int(sys.argv[2]))
