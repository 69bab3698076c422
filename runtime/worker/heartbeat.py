"""A background beat while a job runs: the render thread never pauses to keep its lease alive."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from runtime.worker.telemetry import logger


class Heartbeat:
    """Calls `beat` every `interval_seconds` until the `with` block ends.

    A beat that raises is logged and retried at the next beat; the queue's visibility timeout is
    a few beats long, so one failed beat does not lose the message.
    """

    def __init__(self, interval_seconds: float, beat: Callable[[], None]) -> None:
        self._interval = max(0.05, interval_seconds)
        self._beat = beat
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._beat()
            except Exception:
                logger.exception("heartbeat failed")
