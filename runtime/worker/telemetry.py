"""Metrics as CloudWatch Embedded Metric Format lines, and the worker's JSON logger.

EMF is written by hand (one JSON line per emission on stdout, which the awslogs driver ships) so
that emitting is thread-safe and immediate; Powertools' `Metrics` buffers in class-level state
meant for one Lambda invocation. The same numbers are summed in memory for `/metrics`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping
from typing import TextIO

from aws_lambda_powertools import Logger

from runtime.common.jobs import ErrorCode
from runtime.common.metrics import (
    DIMENSION_ERROR_CODE,
    DIMENSION_LANE,
    DIMENSION_SERVICE,
    NAMESPACE,
    Metric,
)
from runtime.common.names import Lane

SERVICE = "worker"
logger = Logger(service="musetalk-worker")

_UNITS: dict[Metric, str] = {
    Metric.QUEUE_WAIT_MS: "Milliseconds",
    Metric.DOWNLOAD_MS: "Milliseconds",
    Metric.PREPARE_MS: "Milliseconds",
    Metric.SPEAK_MS: "Milliseconds",
    Metric.ENCODE_MS: "Milliseconds",
    Metric.UPLOAD_MS: "Milliseconds",
    Metric.AVATAR_CACHE_LOAD_MS: "Milliseconds",
    Metric.STARTUP_DOWNLOAD_MS: "Milliseconds",
    Metric.STARTUP_LOAD_MS: "Milliseconds",
    Metric.FRAMES_PER_SECOND: "Count/Second",
    Metric.GPU_UTILIZATION: "Percent",
    Metric.GPU_MEMORY_USED_PERCENT: "Percent",
    Metric.SYNC_CONFIDENCE: "None",
    Metric.GPU_SECONDS: "Seconds",
    Metric.OUTPUT_SECONDS: "Seconds",
    Metric.ESTIMATED_COST_USD: "None",
}


class MetricsSink:
    """Writes EMF documents and keeps running totals (count, sum) per metric for `/metrics`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.totals: dict[str, tuple[int, float]] = {}

    def emit(
        self,
        values: Mapping[Metric, float],
        *,
        lane: Lane | None = None,
        error_code: ErrorCode | None = None,
    ) -> None:
        if not values:
            return
        # CloudWatch matches a metric only on its exact dimension set: worker metrics are
        # {Service, Lane}, the set the stack's dashboard and alarms query; failures also by code.
        dimensions: dict[str, str] = {DIMENSION_SERVICE: SERVICE}
        dimension_sets = [[DIMENSION_SERVICE]]
        if lane is not None:
            dimensions[DIMENSION_LANE] = lane.value
            dimension_sets = [[DIMENSION_SERVICE, DIMENSION_LANE]]
            if error_code is not None:
                dimensions[DIMENSION_ERROR_CODE] = error_code.value
                dimension_sets.append([DIMENSION_SERVICE, DIMENSION_LANE, DIMENSION_ERROR_CODE])
        document: dict[str, object] = {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": dimension_sets,
                        "Metrics": [
                            {"Name": name.value, "Unit": _UNITS.get(name, "Count")}
                            for name in values
                        ],
                    }
                ],
            },
            **dimensions,
            **{name.value: value for name, value in values.items()},
        }
        line = json.dumps(document, separators=(",", ":"))
        with self._lock:
            for name, value in values.items():
                count, total = self.totals.get(name.value, (0, 0.0))
                self.totals[name.value] = (count + 1, total + value)
            stream = self._stream or sys.stdout
            stream.write(line + "\n")
            stream.flush()

    def count(self, metric: Metric) -> float:
        """Sum of a metric so far (tests and `/metrics`)."""
        with self._lock:
            return self.totals.get(metric.value, (0, 0.0))[1]

    def prometheus_text(self) -> str:
        with self._lock:
            lines = []
            for name, (count, total) in sorted(self.totals.items()):
                lines.append(f"musetalk_{_snake(name)}_count {count}")
                lines.append(f"musetalk_{_snake(name)}_sum {total}")
        return "\n".join(lines) + "\n"


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
