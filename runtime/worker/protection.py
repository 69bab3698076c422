"""ECS task scale-in protection, held while a job runs.

Without it, a scale-in on queue backlog stops whichever task ECS picks, mid-render. The ECS agent
exposes `$ECS_AGENT_URI/task-protection/v1/state`; protection expires by itself after
`ExpiresInMinutes`, so a worker that dies cannot pin capacity forever, and a long job renews it.
Outside ECS (`ECS_AGENT_URI` unset) this is a no-op, said once in the log.
"""

from __future__ import annotations

import threading
import time

import httpx

from runtime.worker.telemetry import logger


class TaskProtection:
    def __init__(
        self, agent_uri: str | None, *, expires_minutes: int, timeout_seconds: float = 5.0
    ) -> None:
        self._url = f"{agent_uri.rstrip('/')}/task-protection/v1/state" if agent_uri else None
        self._expires_minutes = max(1, expires_minutes)
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self._held_since: float | None = None
        if self._url is None:
            logger.info("ECS_AGENT_URI unset: task scale-in protection is a no-op")

    @property
    def held(self) -> bool:
        return self._held_since is not None

    def hold(self) -> None:
        """Enable protection, or renew it once half its lifetime has passed."""
        with self._lock:
            now = time.monotonic()
            half_life = self._expires_minutes * 30
            if self._held_since is not None and now - self._held_since < half_life:
                return
            if self._put({"ProtectionEnabled": True, "ExpiresInMinutes": self._expires_minutes}):
                self._held_since = now

    def release(self) -> None:
        with self._lock:
            if self._held_since is None:
                return
            if self._put({"ProtectionEnabled": False}):
                self._held_since = None

    def _put(self, body: dict[str, object]) -> bool:
        if self._url is None:
            return True
        try:
            response = httpx.put(self._url, json=body, timeout=self._timeout)
        except httpx.HTTPError as error:
            logger.warning("task protection request failed", extra={"reason": str(error)})
            return False
        if response.status_code != 200:
            logger.warning("task protection refused", extra={"status_code": response.status_code})
            return False
        return True
