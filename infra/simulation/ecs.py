"""ECS on EC2 as the simulation needs it (docs/simulation.md, "ECS"): services that keep their
desired count of tasks, capacity providers whose managed scaling sizes each Auto Scaling group to
the tasks that need a host, one GPU task per host, the cold start of a task (host boot, image pull,
weight sync, engine load), and spot interruption with draining."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import count

from infra.simulation.metrics import MetricStore, key
from infra.simulation.template import Lane, Provider

# Managed scaling scales in after this many minutes of fewer hosts needed (its low alarm).
SCALE_IN_MINUTES = 15

_ids = count(1)


@dataclass(frozen=True)
class ColdStart:
    """Seconds each step of a cold start takes; the defaults are docs/simulation.md's."""

    host_boot: int = 150  # launch, boot, ECS agent registered
    image_pull: int = 180  # first task on a host pulls and extracts the image
    cached_image: int = 10
    weight_sync: int = 120  # first task on a host downloads the weights (shared volume after)
    engine_load: int = 45
    spot_notice: int = 120
    agent_sees_notice: int = 10  # the agent polls instance metadata, then sets DRAINING
    capacity_available: bool = True  # False: the group cannot launch (spot or quota short)


@dataclass
class Host:
    provider: str
    launched_at: int
    ready_at: int
    id: int = field(default_factory=lambda: next(_ids))
    state: str = "PENDING"  # PENDING -> ACTIVE -> DRAINING -> TERMINATED
    image_cached: bool = False
    weights_cached: bool = False
    terminate_at: int | None = None
    tasks: list[Task] = field(default_factory=list)


@dataclass
class Task:
    lane: str
    provider: str
    created_at: int
    id: int = field(default_factory=lambda: next(_ids))
    host: Host | None = None
    state: str = "PROVISIONING"  # -> PENDING (pulling) -> RUNNING -> STOPPED
    running_at: int | None = None
    ready_at: int | None = None
    sigterm_at: int | None = None
    kill_at: int | None = None
    busy: bool = False  # a job in progress: scale-in protection held


class Cluster:
    def __init__(self, providers: dict[str, Provider], cold: ColdStart) -> None:
        self.providers = providers
        self.cold = cold
        self.hosts: list[Host] = []
        self.tasks: list[Task] = []
        self.desired: dict[str, int] = {}
        self.events: list[tuple[int, str]] = []
        self._group_desired = {p: provider.min_size for p, provider in providers.items()}
        self._low_minutes = dict.fromkeys(providers, 0)
        self.max_hosts_seen = 0

    def live_hosts(self, provider: str | None = None) -> list[Host]:
        return [
            h
            for h in self.hosts
            if h.state != "TERMINATED" and (provider is None or h.provider == provider)
        ]

    def lane_tasks(self, lane: str) -> list[Task]:
        return [t for t in self.tasks if t.lane == lane and t.state != "STOPPED"]

    # The service scheduler ------------------------------------------------------------------

    def schedule(self, lane: Lane, now: int) -> None:
        """Start tasks up to the desired count, stop idle ones above it; place what waits."""
        active = [t for t in self.lane_tasks(lane.name) if t.sigterm_at is None]
        want = self.desired.get(lane.name, 0)
        for _ in range(want - len(active)):
            provider = self._provider_for(lane, active)
            task = Task(lane=lane.name, provider=provider, created_at=now)
            self.tasks.append(task)
            active.append(task)
        if len(active) > want:
            idle = [t for t in active if not t.busy]
            for task in sorted(idle, key=lambda t: t.ready_at is not None)[: len(active) - want]:
                self.stop(task, now, lane.stop_timeout, why="scale-in")
        for task in self.lane_tasks(lane.name):
            if task.state == "PROVISIONING":
                self._place(task, now)

    def _provider_for(self, lane: Lane, active: list[Task]) -> str:
        for provider, base, _ in lane.strategy:
            if base and sum(t.provider == provider for t in active) < base:
                return provider
        return next(provider for provider, _, weight in lane.strategy if weight > 0)

    def _place(self, task: Task, now: int) -> None:
        for host in self.live_hosts(task.provider):
            if host.state == "ACTIVE" and not any(t.state != "STOPPED" for t in host.tasks):
                task.host = host
                host.tasks.append(task)
                task.state = "PENDING"
                pull = self.cold.cached_image if host.image_cached else self.cold.image_pull
                task.running_at = now + pull
                sync = 0 if host.weights_cached else self.cold.weight_sync
                task.ready_at = task.running_at + sync + self.cold.engine_load
                return

    def stop(self, task: Task, now: int, stop_timeout: int, *, why: str) -> None:
        if task.sigterm_at is not None:
            return
        task.sigterm_at = now
        task.kill_at = now + stop_timeout
        if task.state == "PROVISIONING" or not task.busy:
            task.state = "STOPPED"
        self.events.append((now, f"task {task.id} ({task.lane}) stopped: {why}"))

    # Hosts and tasks moving on ---------------------------------------------------------------

    def advance(self, now: int) -> list[Task]:
        """Boot hosts, start containers, end draining; the tasks killed now (no hand-back)."""
        killed = []
        for host in self.live_hosts():
            if host.state == "PENDING" and now >= host.ready_at:
                host.state = "ACTIVE"
                self.events.append((now, f"host {host.id} active ({self._kind(host)})"))
            if host.terminate_at is not None and now >= host.terminate_at:
                host.state = "TERMINATED"
                self.events.append((now, f"host {host.id} terminated"))
                for task in host.tasks:
                    if task.state != "STOPPED":
                        task.state = "STOPPED"
                        killed.append(task)
        for task in self.tasks:
            if task.state == "PENDING" and task.running_at is not None and now >= task.running_at:
                task.state = "RUNNING"
                if task.host is not None:
                    task.host.image_cached = True
            ready = task.ready_at is not None and now >= task.ready_at
            if task.state == "RUNNING" and ready and task.host is not None:
                task.host.weights_cached = True
            if task.kill_at is not None and now >= task.kill_at and task.state != "STOPPED":
                task.state = "STOPPED"
                killed.append(task)
        return killed

    def ready(self, task: Task, now: int) -> bool:
        return (
            task.state == "RUNNING"
            and task.sigterm_at is None
            and task.ready_at is not None
            and now >= task.ready_at
        )

    def spot_notice(self, host: Host, now: int, stop_timeouts: dict[str, int]) -> None:
        """The two-minute warning: the host goes at +120 s; with draining, its tasks get SIGTERM."""
        host.terminate_at = now + self.cold.spot_notice
        self.events.append((now, f"spot notice for host {host.id}"))
        if self.providers[host.provider].drains_on_spot_notice:
            host.state = "DRAINING"
            drained_at = now + self.cold.agent_sees_notice
            for task in host.tasks:
                if task.state != "STOPPED":
                    self.stop(task, drained_at, stop_timeouts[task.lane], why="host draining")

    # Managed scaling -------------------------------------------------------------------------

    def managed_scaling(self, now: int) -> None:
        """Per provider, every minute: hosts needed M for the tasks that want one (one GPU task
        per host), CapacityProviderReservation = M / N; the group goes to M / target."""
        for provider_id, provider in self.providers.items():
            needing = [t for t in self.tasks if t.provider == provider_id and t.state != "STOPPED"]
            needed = math.ceil(len(needing) * 100 / provider.target_capacity)
            group = self._group_desired[provider_id]
            if needed > group:
                self._low_minutes[provider_id] = 0
                self._set_group(provider_id, min(needed, provider.max_size), now)
            elif needed < group:
                self._low_minutes[provider_id] += 1
                if self._low_minutes[provider_id] >= SCALE_IN_MINUTES:
                    self._set_group(provider_id, max(needed, provider.min_size), now)
            else:
                self._low_minutes[provider_id] = 0
            self._reconcile(provider_id, now)
        self.max_hosts_seen = max(self.max_hosts_seen, len(self.live_hosts()))

    def _set_group(self, provider_id: str, size: int, now: int) -> None:
        if size != self._group_desired[provider_id]:
            self.events.append((now, f"{self._name(provider_id)} group desired {size}"))
        self._group_desired[provider_id] = size

    def _reconcile(self, provider_id: str, now: int) -> None:
        hosts = [h for h in self.live_hosts(provider_id) if h.terminate_at is None]
        want = self._group_desired[provider_id]
        if len(hosts) < want and self.cold.capacity_available:
            for _ in range(want - len(hosts)):
                host = Host(provider_id, launched_at=now, ready_at=now + self.cold.host_boot)
                self.hosts.append(host)
                self.events.append((now, f"host {host.id} launching ({self._kind(host)})"))
        elif len(hosts) > want:
            # Managed termination protection: only hosts without a task go.
            empty = [h for h in hosts if not any(t.state != "STOPPED" for t in h.tasks)]
            for host in empty[: len(hosts) - want]:
                host.state = "TERMINATED"
                self.events.append((now, f"host {host.id} scaled in"))

    def _name(self, provider_id: str) -> str:
        return "on-demand" if self.providers[provider_id].on_demand else "spot"

    def _kind(self, host: Host) -> str:
        return self._name(host.provider)

    # Container Insights ----------------------------------------------------------------------

    def publish(self, store: MetricStore, lane: Lane, now: int) -> None:
        dims = {"ClusterName": lane.cluster, "ServiceName": lane.service}
        tasks = self.lane_tasks(lane.name)
        running = sum(t.state == "RUNNING" for t in tasks)
        pending = sum(t.state in ("PROVISIONING", "PENDING") for t in tasks)
        store.put(
            key("ECS/ContainerInsights", "DesiredTaskCount", **dims), now, self.desired[lane.name]
        )
        store.put(key("ECS/ContainerInsights", "RunningTaskCount", **dims), now, running)
        store.put(key("ECS/ContainerInsights", "PendingTaskCount", **dims), now, pending)
