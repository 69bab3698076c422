"""A job longer than the visibility timeout stays invisible to other workers while it renders."""

from __future__ import annotations

from runtime.common.jobs import JobStatus
from runtime.common.metrics import Metric
from runtime.common.names import EnvVar, Lane
from runtime.worker.gpu import GpuProbe, GpuSample
from runtime.worker.job_runner import Outcome
from tests.integration.worker.conftest import InBackground, MakeWorker, wait_for_status
from tests.support.small_engine import SmallEngine
from tests.support.worker_world import WorkerWorld


class BusyGpu(GpuProbe):
    """NVML as it reads mid-render on a real GPU."""

    def __init__(self) -> None:
        pass

    def sample(self) -> GpuSample | None:
        return GpuSample(utilization_percent=87.0, memory_used_percent=61.5)


def test_the_heartbeat_keeps_a_long_job_from_being_redelivered(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a 2 s visibility timeout, a 0.5 s heartbeat and a job that renders for about 4 s
    message = world.submit()
    worker = make_worker(
        SmallEngine(seconds_per_frame=0.02),
        gpu=BusyGpu(),
        **{EnvVar.VISIBILITY_TIMEOUT_SECONDS: "2", EnvVar.HEARTBEAT_SECONDS: "0.5"},
    )
    rendering = InBackground(worker)
    wait_for_status(world, message.job_id, JobStatus.RENDERING)

    # When another consumer keeps polling the lane during the render
    stolen = []
    while rendering.is_alive():
        response = world.sqs.receive_message(
            QueueUrl=world.queue_urls[Lane.INTERACTIVE], WaitTimeSeconds=1
        )
        stolen.extend(response.get("Messages", []))

    # Then it never saw the message, and the job finished as its first attempt
    assert stolen == []
    assert rendering.outcome() is Outcome.SUCCEEDED
    record = world.record(message.job_id)
    assert (record.status, record.attempt) == (JobStatus.SUCCEEDED, 1)
    # And each beat reported the GPU as it was during the render
    count, total = worker.metrics.totals[Metric.GPU_UTILIZATION.value]
    assert count >= 2
    assert total == 87.0 * count


def test_a_job_cancelled_while_rendering_stops_at_the_next_beat_and_stays_cancelled(
    world: WorkerWorld, make_worker: MakeWorker
) -> None:
    # Given a job rendering for about 8 s with a 0.2 s heartbeat
    message = world.submit()
    engine = SmallEngine(seconds_per_frame=0.04)
    worker = make_worker(engine, **{EnvVar.HEARTBEAT_SECONDS: "0.2"})
    rendering = InBackground(worker)
    wait_for_status(world, message.job_id, JobStatus.RENDERING)

    # When the API cancels it
    world.table.update_item(
        Key={"pk": f"JOB#{message.job_id}"},
        UpdateExpression="SET #s = :cancelled",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":cancelled": JobStatus.CANCELLED.value},
    )

    # Then the render stopped early, nothing was written over the cancellation, no output exists
    assert rendering.outcome(timeout=30) is Outcome.CANCELLED
    assert sum(engine.batch_sizes) < 200
    record = world.record(message.job_id)
    assert record.status is JobStatus.CANCELLED
    assert record.output is None
