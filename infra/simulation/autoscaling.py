"""Application Auto Scaling for an ECS service's desired count (docs/simulation.md, "Scaling").

Target tracking: AWS creates two alarms on the policy's metric, a high one (above the target for
3 of 3 one-minute datapoints) and a low one (below 90 % of it for 15 of 15), and sets the capacity
in proportion: ceil(current * metric / target). During the scale-out cooldown it scales out only
to more than the previous scale-out set; scale-in waits for the scale-in cooldown.
Step scaling: while its alarm is in ALARM (an Auto Scaling action runs every minute), the step
whose bounds hold the breach applies. ChangeInCapacity: during the cooldown the capacity the
initiating scale-out added counts towards the next one. ExactCapacity sets the count; a smaller
count (a scale-in) waits for the policy's cooldown, a larger one does not.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from infra.simulation.alarms import Alarm
from infra.simulation.metrics import MetricStore
from infra.simulation.template import Lane, StepPolicy

_HIGH_DATAPOINTS = 3
_LOW_DATAPOINTS = 15
_LOW_FRACTION = 0.9


@dataclass
class ScalableTarget:
    lane: Lane
    desired: int
    events: list[tuple[int, str]] = field(default_factory=list)
    max_desired_seen: int = 0
    _alarms: list[tuple[Alarm, Callable[[float | None, int], None]]] = field(default_factory=list)
    _last_scale_out: int | None = None
    _scale_out_to: int = 0
    _last_scale_in: int | None = None
    _step_state: dict[str, tuple[int, int]] = field(default_factory=dict)  # policy: (start, base)

    def __post_init__(self) -> None:
        self.max_desired_seen = self.desired
        for step in self.lane.steps:
            self._alarms.append((step.alarm, functools.partial(self._step, step)))
        tracking = self.lane.tracking
        if tracking is None:
            return
        for name, datapoints, threshold, comparison, out in (
            ("high", _HIGH_DATAPOINTS, tracking.target, "GreaterThanThreshold", True),
            ("low", _LOW_DATAPOINTS, tracking.target * _LOW_FRACTION, "LessThanThreshold", False),
        ):
            alarm = Alarm(
                id=name,
                description="target tracking",
                queries=tracking.metric,
                period=60,
                evaluation_periods=datapoints,
                datapoints_to_alarm=datapoints,
                threshold=threshold,
                comparison=comparison,
                treat_missing="missing",
                actions=[],
            )
            self._alarms.append((alarm, functools.partial(self._track, out=out)))

    def evaluate(self, store: MetricStore, now: int) -> None:
        """One minute of the policies: every alarm, then the action of each one in ALARM."""
        for alarm, _ in self._alarms:
            alarm.evaluate(store, now)
        for alarm, act in self._alarms:
            if alarm.state == "ALARM":
                act(alarm.datapoints(store, now)[0], now)

    def _track(self, metric: float | None, now: int, *, out: bool) -> None:
        tracking = self.lane.tracking
        if metric is None or tracking is None:
            return
        wanted = math.ceil(self.desired * metric / tracking.target)
        if out:
            in_cooldown = (
                self._last_scale_out is not None
                and now - self._last_scale_out < tracking.scale_out_cooldown
            )
            if wanted > self.desired and (not in_cooldown or wanted > self._scale_out_to):
                self._set(wanted, now, "target tracking scale-out")
                self._last_scale_out, self._scale_out_to = now, self.desired
        else:
            last = max(self._last_scale_in or -(10**9), self._last_scale_out or -(10**9))
            if wanted < self.desired and now - last >= tracking.scale_in_cooldown:
                self._set(wanted, now, "target tracking scale-in")
                self._last_scale_in = now

    def _step(self, step: StepPolicy, metric: float | None, now: int) -> None:
        if metric is None:
            return
        breach = metric - step.alarm.threshold
        adjustment = next(
            (
                change
                for lower, upper, change in step.steps
                if (lower is None or breach >= lower) and (upper is None or breach < upper)
            ),
            None,
        )
        if adjustment is None:
            return
        started, base = self._step_state.get(step.id, (-(10**9), self.desired))
        in_cooldown = now - started < step.cooldown
        if step.adjustment_type == "ExactCapacity":
            wanted = adjustment
        else:  # ChangeInCapacity: in the cooldown, what the initiating scale-out added counts
            wanted = (base if in_cooldown else self.desired) + adjustment
        scale_in = wanted < self.desired
        if wanted == self.desired or (scale_in and in_cooldown):
            return
        if not in_cooldown or step.adjustment_type == "ExactCapacity":
            self._step_state[step.id] = (now, self.desired)
        self._set(wanted, now, f"step scaling ({step.adjustment_type})")

    def _set(self, wanted: int, now: int, why: str) -> None:
        clamped = max(self.lane.min_tasks, min(self.lane.max_tasks, wanted))
        if clamped != self.desired:
            change = f"{self.desired} -> {clamped}"
            self.events.append((now, f"{self.lane.name} desired {change} ({why})"))
            self.desired = clamped
            self.max_desired_seen = max(self.max_desired_seen, clamped)
