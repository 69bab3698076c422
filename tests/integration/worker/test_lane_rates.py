"""Workers publish what the API's ETA needs: each render's frames and service seconds in the
lane's rolling window, and that they are alive."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from runtime.common.metrics import Metric
from runtime.common.names import JobsTable, Lane
from runtime.common.records import lane_stats_pk
from runtime.worker.job_runner import Outcome
from tests.integration.worker.conftest import MakeWorker
from tests.support.worker_world import WorkerWorld


def test_a_finished_render_adds_its_sample_to_the_lane_window(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job on the batch lane
    world.submit(lane=Lane.BATCH)
    worker = make_worker()

    # When the worker renders it
    assert worker.run_once() is Outcome.SUCCEEDED

    # Then the lane's item holds one sample of 200 frames with a positive service time
    table = boto3.resource("dynamodb").Table(world.names.jobs_table)
    item = table.get_item(Key={JobsTable.PARTITION_KEY: lane_stats_pk(Lane.BATCH.value)})["Item"]
    (sample,) = item["samples"].values()
    assert sample["frames"] == 200
    assert sample["seconds"] > 0
    assert len(item["workers"]) == 1
    # And the other lane has no item
    other = table.get_item(Key={JobsTable.PARTITION_KEY: lane_stats_pk(Lane.INTERACTIVE.value)})
    assert "Item" not in other


def test_a_succeeded_job_reports_gpu_seconds_and_its_estimated_cost(
    world: WorkerWorld, make_worker: MakeWorker, tmp_path: Path
) -> None:
    # Given a host that says it is a g5.xlarge, and a price table for it
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"instance_type": "g5.xlarge"}))
    message = world.submit()
    worker = make_worker(
        MUSETALK_HOST_INFO_FILE=str(host), MUSETALK_GPU_PRICES_JSON='{"g5.xlarge": 3600}'
    )

    # When the job renders
    assert worker.run_once() is Outcome.SUCCEEDED

    # Then it reports its GPU-seconds and cost = seconds x price per second, and the metrics
    record = world.record(message.job_id)
    assert record.instance_type == "g5.xlarge"
    assert record.gpu_seconds is not None
    assert record.gpu_seconds > 0
    assert record.estimated_cost_usd == pytest.approx(record.gpu_seconds, rel=1e-3)
    assert worker.metrics.count(Metric.ESTIMATED_COST_USD) == pytest.approx(
        record.estimated_cost_usd
    )
    assert worker.metrics.count(Metric.OUTPUT_SECONDS) == pytest.approx(8.0)  # 200 frames, 25 fps
