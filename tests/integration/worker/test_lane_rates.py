"""Workers publish what the API's ETA needs: each render's frames and service seconds in the
lane's rolling window, and that they are alive."""

from __future__ import annotations

import boto3

from runtime.common.names import JobsTable, Lane
from runtime.common.records import lane_stats_pk
from runtime.worker.job_runner import Outcome
from tests.integration.worker.conftest import MakeWorker
from tests.worker_support.aws import WorkerWorld


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
