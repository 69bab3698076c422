"""Early warning of a spot interruption from the instance metadata service (IMDSv2).

EC2 posts `spot/instance-action` two minutes before reclaiming a spot instance. ECS spot draining
(`ECS_ENABLE_SPOT_INSTANCE_DRAINING=true` on the hosts) turns that into a SIGTERM as well; polling
it here starts draining even where draining is off. Tasks often cannot reach IMDS (hop limit 1 on
bridge networking): after a few failed tries the poller says so once and stops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

from runtime.worker.telemetry import logger

TOKEN_PATH = "/latest/api/token"  # noqa: S105  # nosec B105 (a URL path)
NOTICE_PATH = "/latest/meta-data/spot/instance-action"
MAX_FAILURES = 3


class SpotNoticePoller:
    def __init__(
        self,
        endpoint: str,
        on_notice: Callable[[], None],
        *,
        interval_seconds: float = 5.0,
        timeout_seconds: float = 2.0,
    ) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._on_notice = on_notice
        self._interval = interval_seconds
        self._timeout = timeout_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spot-notice", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(self._timeout * 2 + 1)

    def check(self, client: httpx.Client) -> bool:
        """One IMDSv2 round: True when an interruption notice is posted."""
        token = client.put(
            self._endpoint + TOKEN_PATH,
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
        )
        token.raise_for_status()
        notice = client.get(
            self._endpoint + NOTICE_PATH, headers={"X-aws-ec2-metadata-token": token.text}
        )
        if notice.status_code == 404:
            return False
        notice.raise_for_status()
        return True

    def _run(self) -> None:
        failures = 0
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            while not self._stopped.is_set():
                try:
                    if self.check(client):
                        logger.warning("spot interruption notice: draining")
                        self._on_notice()
                        return
                    failures = 0
                except httpx.HTTPError as error:
                    failures += 1
                    if failures >= MAX_FAILURES:
                        logger.info(
                            "instance metadata unreachable; spot notice polling off",
                            extra={"reason": type(error).__name__},
                        )
                        return
                self._stopped.wait(self._interval)
