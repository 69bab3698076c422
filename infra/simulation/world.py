"""The simulated deployment, advanced in 5-second ticks: queues, the cluster, the scaling targets,
the alarms, the dead-letter Lambda and the workers, which behave as `runtime/worker` does:

- a ready task takes one message at a time and extends its visibility while it renders;
- success or a media error deletes the message (JobsSucceeded / JobsFailed with the worker's
  dimensions); a crash leaves it to reappear after the visibility timeout;
- on SIGTERM a job that cannot finish within the stop timeout (less the StopPolicy margin) is
  handed back as a *new* message (job_runner: `resend`), so an interruption uses no delivery;
- the dead-letter Lambda drains a DLQ within seconds, marks the job FAILED and emits JobsFailed
  with `dead_letter_dimensions`;
- every queue action (the workers' polls included) and the template's scheduled GetQueueAttributes
  calls keep a queue awake for CloudWatch (`sqs.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from infra.simulation.alarms import Alarm
from infra.simulation.autoscaling import ScalableTarget
from infra.simulation.ecs import Cluster, ColdStart, Host, Task
from infra.simulation.metrics import MetricStore, key
from infra.simulation.sqs import Message, Queue
from infra.simulation.template import StackModel
from runtime.common.metrics import NAMESPACE, Metric, dead_letter_dimensions, worker_dimensions

TICK = 5
# Idle time before the scenario, so every alarm has its history (as in a running deployment).
SETTLE_MINUTES = 30
HANDBACK_SECONDS = 3  # hand_back + send + delete (three calls)
DEAD_LETTER_LAMBDA_SECONDS = 5  # event source long poll + the handler


@dataclass
class Job:
    id: str
    lane: str
    seconds: int
    kind: str = "ok"  # ok | media_error | crash
    submitted_at: int = 0
    status: str = "QUEUED"
    deliveries: int = 0
    interruptions: int = 0
    started_at: int | None = None
    finished_at: int | None = None


@dataclass
class Work:
    job: Job
    message: Message
    ends_at: int


@dataclass
class World:
    model: StackModel
    cold: ColdStart = field(default_factory=ColdStart)
    store: MetricStore = field(default_factory=MetricStore)
    jobs: dict[str, Job] = field(default_factory=dict)
    events: list[tuple[int, str]] = field(default_factory=list)
    now: int = 0
    start: int = 0  # when the scenario began (after the settle phase)
    settle_minutes: int = SETTLE_MINUTES

    def __post_init__(self) -> None:
        self.cluster = Cluster(self.model.providers, self.cold)
        self.queues: dict[str, Queue] = {}
        for lane in self.model.lanes.values():
            dlq = Queue(lane.dead_letter_queue, visibility_timeout=360)
            self.queues[lane.dead_letter_queue] = dlq
            self.queues[lane.queue] = Queue(
                lane.queue,
                visibility_timeout=lane.visibility_timeout,
                dead_letter=dlq,
                max_receive_count=lane.max_receive_count,
            )
        self.targets = {
            name: ScalableTarget(lane, desired=lane.min_tasks)
            for name, lane in self.model.lanes.items()
        }
        self.alarms: list[Alarm] = self.model.alarms
        self.work: dict[int, Work] = {}
        self._scheduled: dict[int, list[Callable[[], None]]] = {}
        self._warm_start()
        self.run(self.settle_minutes)
        self.start = self.now
        self.events.clear()
        self.cluster.events.clear()
        for target in self.targets.values():
            target.events.clear()
        for alarm in self.alarms:
            alarm.history.clear()

    # Scenario controls ------------------------------------------------------------------------

    def at(self, seconds: int, action: Callable[[], None]) -> None:
        """Run `action` `seconds` after the scenario's start (a multiple of the tick)."""
        self._scheduled.setdefault(self.start + seconds, []).append(action)

    def submit(self, job: Job) -> None:
        job.submitted_at = self.now
        self.jobs[job.id] = job
        self.queues[self.model.lanes[job.lane].queue].send(job.id, self.now)
        self.events.append((self.now, f"job {job.id} submitted ({job.lane}, {job.kind})"))

    def spot_notice_for(self, job_id: str) -> None:
        """A spot notice for the host that renders `job_id` now."""
        host = self.host_of(job_id)
        stop_timeouts = {name: lane.stop_timeout for name, lane in self.model.lanes.items()}
        self.cluster.spot_notice(host, self.now, stop_timeouts)

    def host_of(self, job_id: str) -> Host:
        (task,) = [
            t for t in self.cluster.tasks if t.id in self.work and self.work[t.id].job.id == job_id
        ]
        if task.host is None:
            raise LookupError(f"job {job_id} runs on no host")
        return task.host

    def run(self, minutes: int) -> None:
        end = self.now + minutes * 60
        while self.now < end:
            self._tick()
            self.now += TICK

    # One tick --------------------------------------------------------------------------------

    def _tick(self) -> None:
        now = self.now
        for action in self._scheduled.pop(now, []):
            action()
        for task in self.cluster.advance(now):
            self._killed(task)
        for task in list(self.cluster.tasks):
            if task.id in self.work:
                self._progress(task)
        for lane in self.model.lanes.values():
            for task in self.cluster.lane_tasks(lane.name):
                if task.id not in self.work and self.cluster.ready(task, now):
                    self._take(task, self.queues[lane.queue])
        self._dead_letter_lambda()
        self._scheduled_touches()
        for queue in self.queues.values():
            queue.publish(self.store, now)
        for lane in self.model.lanes.values():
            self.cluster.desired[lane.name] = self.targets[lane.name].desired
            self.cluster.publish(self.store, lane, now)
        if now % 60 == 0:
            for target in self.targets.values():
                target.evaluate(self.store, now)
            for alarm in self.alarms:
                was = alarm.state
                if alarm.evaluate(self.store, now) and "ALARM" in (was, alarm.state):
                    self.events.append((now, f"alarm {alarm.state}: {alarm.description}"))
            self.cluster.managed_scaling(now)
        for lane in self.model.lanes.values():
            self.cluster.desired[lane.name] = self.targets[lane.name].desired
            self.cluster.schedule(lane, now)

    def _take(self, task: Task, queue: Queue) -> None:
        message, moved = queue.receive(self.now)
        for dead in moved:
            self.events.append((self.now, f"job {dead.job} moved to the dead-letter queue"))
        if message is None:
            return
        job = self.jobs[message.job]
        if job.status in ("SUCCEEDED", "FAILED"):
            queue.delete(message, self.now)  # a duplicate of a final job: dropped
            return
        job.deliveries += 1
        job.status = "RUNNING"
        job.started_at = job.started_at if job.started_at is not None else self.now
        seconds = {"ok": job.seconds, "media_error": 20, "crash": 60}[job.kind]
        task.busy = True
        self.work[task.id] = Work(job, message, self.now + seconds)
        self.events.append(
            (self.now, f"job {job.id} started on task {task.id} (receive {message.receive_count})")
        )

    def _progress(self, task: Task) -> None:
        work = self.work[task.id]
        queue = self.queues[self.model.lanes[task.lane].queue]
        if task.state == "STOPPED":
            return
        queue.change_visibility(work.message, self.now, queue.visibility_timeout)  # heartbeat
        signalled = task.sigterm_at is not None and self.now >= task.sigterm_at
        if signalled and self._hand_back_now(task, work):
            return
        if self.now < work.ends_at:
            return
        job = work.job
        if job.kind == "crash":
            task.state = "STOPPED"  # the process dies; the message reappears after its timeout
            self._release(task)
            self.events.append((self.now, f"job {job.id} crashed task {task.id}"))
            return
        queue.delete(work.message, self.now)
        job.status = "SUCCEEDED" if job.kind == "ok" else "FAILED"
        job.finished_at = self.now
        metric = Metric.JOBS_SUCCEEDED if job.kind == "ok" else Metric.JOBS_FAILED
        self.store.put(key(NAMESPACE, metric.value, **worker_dimensions(task.lane)), self.now, 1)
        self.events.append((self.now, f"job {job.id} {job.status}"))
        self._release(task)
        if task.sigterm_at is not None:
            task.state = "STOPPED"

    def _hand_back_now(self, task: Task, work: Work) -> bool:
        """StopPolicy: finish when the rest fits the stop timeout less a margin, else hand back."""
        if task.sigterm_at is None or task.kill_at is None:
            return False
        timeout = task.kill_at - task.sigterm_at
        margin = min(10.0, 0.25 * timeout)
        if work.ends_at <= task.sigterm_at + timeout - margin:
            return False
        if self.now < task.sigterm_at + HANDBACK_SECONDS:
            return True  # interrupting at the engine's next step, handing back
        queue = self.queues[self.model.lanes[task.lane].queue]
        queue.delete(work.message, self.now)
        queue.send(work.job.id, self.now)
        work.job.status = "QUEUED"
        work.job.interruptions += 1
        self.events.append((self.now, f"job {work.job.id} handed back by task {task.id}"))
        self._release(task)
        task.state = "STOPPED"
        return True

    def _killed(self, task: Task) -> None:
        if task.id in self.work:
            job = self.work[task.id].job
            self.events.append((self.now, f"task {task.id} killed mid-job {job.id}: no hand-back"))
            self._release(task)

    def _release(self, task: Task) -> None:
        task.busy = False
        self.work.pop(task.id, None)

    def _dead_letter_lambda(self) -> None:
        for lane in self.model.lanes.values():
            if lane.dead_letter_queue not in self.model.consumed_queues:
                continue
            dlq = self.queues[lane.dead_letter_queue]
            dlq.access(self.now)  # the event source mapping polls the queue without pause
            for message in list(dlq.messages):
                if self.now - message.sent_at < DEAD_LETTER_LAMBDA_SECONDS:
                    continue
                dlq.received_since_publish += 1
                dlq.delete(message, self.now)
                job = self.jobs[message.job]
                if job.status not in ("SUCCEEDED", "FAILED"):
                    job.status, job.finished_at = "FAILED", self.now
                    dims = dead_letter_dimensions(lane.name)
                    self.store.put(key(NAMESPACE, Metric.JOBS_FAILED.value, **dims), self.now, 1)
                    self.events.append(
                        (self.now, f"job {job.id} FAILED by the dead-letter handler")
                    )

    def _scheduled_touches(self) -> None:
        """The template's scheduled functions call GetQueueAttributes, every rate interval
        counted from the deployment (t = 0)."""
        for touch in self.model.queue_touches:
            if self.now % touch.interval == 0:
                for queue_id in sorted(touch.queues & self.queues.keys()):
                    self.queues[queue_id].access(self.now)

    def _warm_start(self) -> None:
        """The lanes' minimum tasks already running on warm hosts when the scenario starts."""
        for lane in self.model.lanes.values():
            self.cluster.desired[lane.name] = lane.min_tasks
            for _ in range(lane.min_tasks):
                provider = self.cluster._provider_for(lane, self.cluster.lane_tasks(lane.name))
                host = Host(provider, launched_at=-3600, ready_at=-3600, state="ACTIVE")
                host.image_cached = host.weights_cached = True
                task = Task(lane=lane.name, provider=provider, created_at=-3600, host=host)
                task.state, task.running_at, task.ready_at = "RUNNING", -3600, -3600
                host.tasks.append(task)
                self.cluster.hosts.append(host)
                self.cluster.tasks.append(task)
        self.cluster._group_desired.update(
            {p: len(self.cluster.live_hosts(p)) for p in self.model.providers}
        )

    def timeline(self) -> list[str]:
        merged = self.events + self.cluster.events
        for target in self.targets.values():
            merged += target.events
        return [
            f"{(t - self.start) // 60:4d}:{(t - self.start) % 60:02d}  {text}"
            for t, text in sorted(merged, key=lambda e: e[0])
        ]

    def seconds(self, at: int | None) -> int | None:
        """A time as seconds since the scenario's start."""
        return None if at is None else at - self.start
