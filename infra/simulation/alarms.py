"""CloudWatch alarm evaluation as AWS documents it (docs/simulation.md, "Alarms").

Every minute an alarm looks at its newest `EvaluationPeriods` datapoints (period-aligned, the newest
one ending a minute ago: metrics arrive about a minute late) and goes to ALARM when at least
`DatapointsToAlarm` of them breach. A missing datapoint counts as `TreatMissingData` says; with
every datapoint missing the alarm keeps its state (`ignore`), reads INSUFFICIENT_DATA (`missing`)
or treats them all as good/bad (`notBreaching`/`breaching`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.simulation.metrics import MetricStore, Query, evaluate, metric_key, queries

METRIC_DELAY_SECONDS = 60

_COMPARISONS = {
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}


@dataclass
class Alarm:
    id: str
    description: str
    queries: list[Query]
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing: str
    actions: list[str]
    state: str = "INSUFFICIENT_DATA"
    history: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def from_template(cls, logical_id: str, resource: Mapping[str, Any]) -> Alarm:
        props = resource["Properties"]
        if "Metrics" in props:
            entries = queries(props["Metrics"])
            period = min(q.period for q in entries if q.metric is not None)
        else:
            period = int(props["Period"])
            entries = [
                Query(
                    id="m",
                    returns=True,
                    metric=metric_key(props),
                    stat=props["Statistic"],
                    period=period,
                )
            ]
        evaluation_periods = int(props["EvaluationPeriods"])
        return cls(
            id=logical_id,
            description=props.get("AlarmDescription", logical_id),
            queries=entries,
            period=period,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=int(props.get("DatapointsToAlarm", evaluation_periods)),
            threshold=float(props["Threshold"]),
            comparison=props["ComparisonOperator"],
            treat_missing=props.get("TreatMissingData", "missing"),
            actions=[action["Ref"] for action in props.get("AlarmActions", []) if "Ref" in action],
        )

    def datapoints(self, store: MetricStore, now: int) -> list[float | None]:
        newest_end = (now - METRIC_DELAY_SECONDS) // self.period * self.period
        return [
            evaluate(store, self.queries, newest_end - index * self.period)
            for index in range(self.evaluation_periods)
        ]

    def evaluate(self, store: MetricStore, now: int) -> bool:
        """Update the state at `now`; True when it changed."""
        points = self.datapoints(store, now)
        compare = _COMPARISONS[self.comparison]
        present = [point for point in points if point is not None]
        if not present and self.treat_missing in ("ignore", "missing"):
            new_state = self.state if self.treat_missing == "ignore" else "INSUFFICIENT_DATA"
        else:
            missing_breaches = self.treat_missing == "breaching"
            breaching = sum(compare(p, self.threshold) for p in present) + (
                (len(points) - len(present)) if missing_breaches else 0
            )
            new_state = "ALARM" if breaching >= self.datapoints_to_alarm else "OK"
        if new_state == self.state:
            return False
        self.state = new_state
        self.history.append((now, new_state))
        return True

    def fired(self) -> bool:
        return any(state == "ALARM" for _, state in self.history)
