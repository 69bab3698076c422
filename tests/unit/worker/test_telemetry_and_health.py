"""Metrics are valid CloudWatch EMF with the shared names; health endpoints tell the truth."""

from __future__ import annotations

import io
import json

from fastapi.testclient import TestClient

from runtime.common.jobs import ErrorCode
from runtime.common.metrics import NAMESPACE, Metric
from runtime.common.names import Lane
from runtime.worker.health import create_app
from runtime.worker.telemetry import MetricsSink


def test_each_emission_is_one_emf_document_with_lane_dimension_and_units() -> None:
    stream = io.StringIO()
    sink = MetricsSink(stream=stream)
    sink.emit({Metric.SPEAK_MS: 1234.5, Metric.JOBS_SUCCEEDED: 1}, lane=Lane.BATCH)

    (line,) = stream.getvalue().splitlines()
    document = json.loads(line)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["Lane"]]
    assert {"Name": "SpeakMs", "Unit": "Milliseconds"} in directive["Metrics"]
    assert document["Lane"] == "batch"
    assert document["SpeakMs"] == 1234.5
    assert document["JobsSucceeded"] == 1


def test_failures_are_also_counted_by_error_code() -> None:
    stream = io.StringIO()
    MetricsSink(stream=stream).emit(
        {Metric.JOBS_FAILED: 1}, lane=Lane.INTERACTIVE, error_code=ErrorCode.NO_FACE
    )
    document = json.loads(stream.getvalue())
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["Lane"],
        ["Lane", "ErrorCode"],
    ]
    assert document["ErrorCode"] == "NO_FACE"


def test_readyz_is_503_until_every_check_passes_and_metrics_are_exposed() -> None:
    checks = {"model_loaded": False, "queues_reachable": True}
    sink = MetricsSink(stream=io.StringIO())
    sink.emit({Metric.OOM_HALVINGS: 1}, lane=Lane.BATCH)
    client = TestClient(create_app(lambda: dict(checks), sink))

    assert client.get("/healthz").status_code == 200
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["model_loaded"] is False
    checks["model_loaded"] = True
    assert client.get("/readyz").status_code == 200
    assert "musetalk_oom_halvings_sum 1.0" in client.get("/metrics").text
