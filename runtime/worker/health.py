"""`/healthz`, `/readyz` and `/metrics`, served by uvicorn on a thread beside the render loop.

`/healthz` answers while the process lives (the container health check); `/readyz` only once the
model is loaded, the queues answered the last poll and no stop was requested.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from runtime.worker.telemetry import MetricsSink


def create_app(readiness: Callable[[], dict[str, bool]], metrics: MetricsSink) -> FastAPI:
    app = FastAPI(title="musetalk-worker", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        checks = readiness()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics")
    def metrics_text() -> PlainTextResponse:
        return PlainTextResponse(metrics.prometheus_text())

    return app


class HealthServer:
    def __init__(self, app: FastAPI, *, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104  # nosec B104 (in-container probe)
        # All interfaces: the ECS/Docker health check and the load balancer reach it from outside.
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_seconds)
