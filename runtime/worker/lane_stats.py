"""The lane's item in the jobs table (`LANE#<lane>`), which the API's ETAs read: recent render
rates, and which workers are up and what each runs (`runtime/api/eta.py`).

Every write is an UpdateItem (the worker has no PutItem) and needs no read first: a render's
sample goes to a slot picked by its job id, a worker's presence and job to keys named by it.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from runtime.common.names import JobsTable
from runtime.common.records import lane_stats_pk
from runtime.worker.job_store import iso, utc_now

# Rolling window of render samples per lane: a job's sample replaces the one in its slot.
RATE_SLOTS = 20


class LaneStats:
    def __init__(self, table: Any) -> None:
        self._table = table  # boto3 DynamoDB Table resource of the jobs table

    def publish_rate(self, lane: str, owner: str, job_id: str, frames: int, seconds: float) -> None:
        """One finished render (frames, service seconds) into the lane's rolling sample window,
        which the API reads for ETAs; slots are picked by job id, so no read is needed."""
        self._ensure_lane_stats(lane)
        slot = int(hashlib.sha256(job_id.encode()).hexdigest(), 16) % RATE_SLOTS
        now = iso(utc_now())
        self._table.update_item(
            Key={JobsTable.PARTITION_KEY: lane_stats_pk(lane)},
            UpdateExpression="SET samples.#slot = :sample, workers.#owner = :now",
            ExpressionAttributeNames={"#slot": f"s{slot}", "#owner": owner},
            ExpressionAttributeValues={
                ":sample": {
                    "frames": frames,
                    "seconds": Decimal(str(round(seconds, 3))),
                    "at": now,
                },
                ":now": now,
            },
        )

    def worker_seen(self, lane: str, owner: str, job_id: str | None = None) -> None:
        """This worker is up and serving `lane`, running `job_id` (the ETA divides the backlog
        among such workers, after their running jobs' remaining work)."""
        self._ensure_lane_stats(lane)
        now = iso(utc_now())
        expression = "SET workers.#owner = :now"
        values: dict[str, Any] = {":now": now}
        if job_id is not None:
            expression += ", running.#owner = :running"
            values[":running"] = {"job_id": job_id, "at": now}
        self._table.update_item(
            Key={JobsTable.PARTITION_KEY: lane_stats_pk(lane)},
            UpdateExpression=expression,
            ExpressionAttributeNames={"#owner": owner},
            ExpressionAttributeValues=values,
        )

    def _ensure_lane_stats(self, lane: str) -> None:
        """Create the lane item's maps if missing (UpdateItem: the worker has no PutItem)."""
        self._table.update_item(
            Key={JobsTable.PARTITION_KEY: lane_stats_pk(lane)},
            UpdateExpression=(
                "SET samples = if_not_exists(samples, :empty),"
                " workers = if_not_exists(workers, :empty),"
                " running = if_not_exists(running, :empty)"
            ),
            ExpressionAttributeValues={":empty": {}},
        )
