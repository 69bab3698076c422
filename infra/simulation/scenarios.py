"""Scenarios a user lives through, each with what the user demands of it (docs/simulation.md).

Every scenario builds a `World` from the synthesized template, drives it and returns the world
with its checks: {demand: held}. Tests assert that every demand holds; `scripts/simulate.py`
prints the timelines and the checks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from infra.simulation.alarms import METRIC_DELAY_SECONDS
from infra.simulation.ecs import ColdStart
from infra.simulation.metrics import evaluate
from infra.simulation.template import StackModel
from infra.simulation.world import Job, World

INTERACTIVE_JOB_SECONDS = 120
BATCH_JOB_SECONDS = 300
QUIET_NIGHT_HOURS = 8  # longer than SQS's six idle hours before a queue sleeps


@dataclass
class Outcome:
    name: str
    world: World
    checks: dict[str, bool]

    def unmet(self) -> list[str]:
        return [demand for demand, held in self.checks.items() if not held]


def cold_start_budget(cold: ColdStart) -> int:
    """Seconds from a message to its job starting on a lane with no task: the metric delay, the
    step alarm's minute, managed scaling's minute, host boot, image pull, weights, engine load."""
    return (
        METRIC_DELAY_SECONDS
        + 60
        + 60
        + cold.host_boot
        + cold.image_pull
        + cold.weight_sync
        + cold.engine_load
        + 60
    )


def _fired(world: World, alarm_name: str) -> bool:
    return any(alarm_name in a.id and a.fired() for a in world.alarms)


def _peak(world: World, alarm_name: str) -> float:
    """The highest datapoint the alarm's metric had during the scenario."""
    (alarm,) = [a for a in world.alarms if alarm_name in a.id]
    ends = range(world.start, world.now + alarm.period, alarm.period)
    points = [evaluate(world.store, alarm.queries, end) for end in ends]
    return max((p for p in points if p is not None), default=0.0)


def one_batch_message(model: StackModel, cold: ColdStart) -> Outcome:
    world = World(model, cold=cold)
    return Outcome("one message into the empty batch lane", world, _one_batch_job(world, cold))


def batch_message_after_quiet_night(model: StackModel, cold: ColdStart) -> Outcome:
    """The batch lane idle for a night (nothing touches its queue but what the template
    schedules), then one message: a queue asleep for CloudWatch would hide it for the wake delay."""
    world = World(model, cold=cold, settle_minutes=QUIET_NIGHT_HOURS * 60)
    return Outcome(
        "one message into the batch lane after a quiet night",
        world,
        _one_batch_job(world, cold),
    )


def _one_batch_job(world: World, cold: ColdStart) -> dict[str, bool]:
    """Send one batch job now; what a user demands of it on a lane with no task."""
    model = world.model
    world.at(0, lambda: world.submit(Job("b1", "batch", BATCH_JOB_SECONDS)))
    world.run(75)
    job = world.jobs["b1"]
    started = world.seconds(job.started_at)
    return {
        "the batch lane never wants more than one task": world.targets["batch"].max_desired_seen
        <= 1,
        "no more than one extra GPU host is launched": world.cluster.max_hosts_seen
        <= _warm_hosts(model) + 1,
        f"the job starts within the cold start ({cold_start_budget(cold)} s)": started is not None
        and started <= cold_start_budget(cold),
        "the job succeeds": job.status == "SUCCEEDED",
        "the lane is back to zero tasks and hosts after the job": world.targets["batch"].desired
        == 0
        and len(world.cluster.live_hosts()) == _warm_hosts(model),
    }


def interactive_burst(model: StackModel, cold: ColdStart, jobs: int = 14) -> Outcome:
    lane = model.lanes["interactive"]
    world = World(model, cold=cold)
    for index in range(jobs):
        job = Job(f"i{index}", "interactive", INTERACTIVE_JOB_SECONDS)
        world.at(0, functools.partial(world.submit, job))
    world.run(120)
    needed = min(lane.max_tasks, max(lane.min_tasks, math.ceil(jobs / lane.jobs_per_task)))
    target = world.targets["interactive"]
    finished = [world.seconds(j.finished_at) or 0 for j in world.jobs.values()]
    return Outcome(
        f"a burst of {jobs} jobs on the warm interactive lane",
        world,
        {
            f"tasks never exceed what the backlog needs ({needed})": target.max_desired_seen
            <= needed,
            "hosts never exceed the tasks wanted": world.cluster.max_hosts_seen
            <= _warm_hosts(model) + target.max_desired_seen - lane.min_tasks,
            "every job succeeds": all(j.status == "SUCCEEDED" for j in world.jobs.values()),
            "the burst is done within 20 minutes": max(finished) <= 20 * 60,
            "after it, the lane is back to its warm tasks and hosts": target.desired
            == lane.min_tasks
            and len(world.cluster.live_hosts()) == _warm_hosts(model),
        },
    )


def spot_notice_mid_render(model: StackModel, cold: ColdStart) -> Outcome:
    world = World(model, cold=cold)
    world.at(0, lambda: world.submit(Job("b1", "batch", 900)))
    noticed: list[int] = []

    def notice_when_rendering() -> None:
        job = world.jobs["b1"]
        if job.status == "RUNNING" and not noticed and world.now - (job.started_at or 0) >= 120:
            noticed.append(world.now)
            world.spot_notice_for("b1")

    for second in range(0, 60 * 60, 5):
        world.at(second, notice_when_rendering)
    world.run(90)
    job = world.jobs["b1"]
    killed = any("killed mid-job" in text for _, text in world.events)
    return Outcome(
        "a spot notice mid-render",
        world,
        {
            "the notice came while the job rendered": bool(noticed),
            "the job is handed back before the host goes": job.interruptions == 1 and not killed,
            "the interruption used no delivery of the job": _max_receive(world, "b1") <= 1,
            "the job succeeds on another host": job.status == "SUCCEEDED",
            "no dead-letter alarm": not _fired(world, "BatchDeadLetters"),
        },
    )


def interrupted_many_times(model: StackModel, cold: ColdStart, times: int = 6) -> Outcome:
    world = World(model, cold=cold)
    world.at(0, lambda: world.submit(Job("b1", "batch", 900)))

    def notice_again() -> None:
        job = world.jobs["b1"]
        host_free = job.status == "RUNNING" and job.interruptions < times
        if (
            host_free
            and world.now - (job.started_at or 0) >= 0
            and _rendering_for(world, "b1") >= 60
        ):
            world.spot_notice_for("b1")

    for second in range(0, 240 * 60, 5):
        world.at(second, notice_again)
    world.run(240)
    job = world.jobs["b1"]
    return Outcome(
        f"the same job interrupted {times} times",
        world,
        {
            f"it was interrupted {times} times (more than maxReceiveCount)": job.interruptions
            == times,
            "it never reaches the dead-letter queue": "moved to the dead-letter"
            not in " ".join(text for _, text in world.events),
            "it succeeds": job.status == "SUCCEEDED",
            "no dead-letter alarm": not _fired(world, "BatchDeadLetters"),
        },
    )


def every_job_fails(model: StackModel, cold: ColdStart, jobs: int = 12) -> Outcome:
    world = World(model, cold=cold)
    for index in range(jobs):
        job = Job(f"f{index}", "interactive", 45, "media_error")
        world.at(index * 60, functools.partial(world.submit, job))
    world.run(30)
    return Outcome(
        f"a burst of {jobs} jobs that all fail",
        world,
        {
            "every job fails": all(j.status == "FAILED" for j in world.jobs.values()),
            "the failure-rate alarm fires": _fired(world, "InteractiveFailureRate"),
        },
    )


def poison_job(model: StackModel, cold: ColdStart) -> Outcome:
    lane = model.lanes["batch"]
    world = World(model, cold=cold)
    world.at(0, lambda: world.submit(Job("p1", "batch", 60, "crash")))
    world.run(120)
    job = world.jobs["p1"]
    return Outcome(
        "a poison job that kills its worker",
        world,
        {
            f"it is tried maxReceiveCount ({lane.max_receive_count}) times, no more": job.deliveries
            == lane.max_receive_count,
            "the dead-letter handler marks it FAILED": job.status == "FAILED",
            "the dead-letter alarm fires though the DLQ is drained in seconds": _fired(
                world, "BatchDeadLetters"
            ),
            "the failure-rate metric counts it (100 % in its period)": _peak(
                world, "BatchFailureRate"
            )
            == 100,
            "the lane never wants more than one task": world.targets["batch"].max_desired_seen <= 1,
        },
    )


def no_capacity(model: StackModel, cold: ColdStart) -> Outcome:
    world = World(model, cold=replace(cold, capacity_available=False))
    world.at(0, lambda: world.submit(Job("b1", "batch", BATCH_JOB_SECONDS)))
    world.run(45)
    return Outcome(
        "no spot capacity (or no vCPU quota) for the batch lane",
        world,
        {
            "the lane does not run away while it waits": world.targets["batch"].max_desired_seen
            <= 1,
            "the waiting-for-capacity alarm fires": _fired(world, "BatchTasksWaitingForCapacity"),
        },
    )


SCENARIOS: dict[str, Callable[[StackModel, ColdStart], Outcome]] = {
    "one-batch-message": one_batch_message,
    "batch-after-quiet-night": batch_message_after_quiet_night,
    "interactive-burst": interactive_burst,
    "spot-notice": spot_notice_mid_render,
    "interrupted-many-times": interrupted_many_times,
    "every-job-fails": every_job_fails,
    "poison-job": poison_job,
    "no-capacity": no_capacity,
}


def _warm_hosts(model: StackModel) -> int:
    return sum(lane.min_tasks for lane in model.lanes.values())


def _max_receive(world: World, job_id: str) -> int:
    return max(
        (
            int(text.rsplit("receive ", 1)[1].rstrip(")"))
            for _, text in world.events
            if text.startswith(f"job {job_id} started")
        ),
        default=0,
    )


def _rendering_for(world: World, job_id: str) -> int:
    """Seconds the job's current delivery has rendered (0 when not running)."""
    starts = [t for t, text in world.events if text.startswith(f"job {job_id} started")]
    return world.now - starts[-1] if starts and world.jobs[job_id].status == "RUNNING" else 0
