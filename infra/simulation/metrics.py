"""CloudWatch as the simulation needs it: metric datapoints keyed like the template's metrics,
statistics over a period, and metric-math expressions evaluated point by point.

A template metric names its queue, cluster or service through `Ref`/`Fn::GetAtt`; the key keeps the
logical id in their place, so the simulation publishes a queue's metrics under the same key the
alarm reads. Semantics (docs/simulation.md): a statistic over a period with no sample is missing;
arithmetic with a missing operand is missing unless `FILL` gives it a value; comparisons, AND and
OR give 1 or 0; `IF(c, a, b)` picks point by point.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MetricKey = tuple[str, str, tuple[tuple[str, str], ...]]
Value = float | None


def resolve(value: Any) -> str:
    """A dimension value: literal, or the logical id an intrinsic points at."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return str(value["Ref"])
    if "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    raise ValueError(f"unsupported dimension value {value!r}")


def metric_key(metric: Mapping[str, Any]) -> MetricKey:
    dims = tuple(sorted((d["Name"], resolve(d["Value"])) for d in metric.get("Dimensions", [])))
    return (metric["Namespace"], metric["MetricName"], dims)


def key(namespace: str, name: str, **dimensions: str) -> MetricKey:
    return (namespace, name, tuple(sorted(dimensions.items())))


class MetricStore:
    """Samples by metric and minute; a statistic is taken over [end - period, end), where `end`
    and `period` are whole minutes (every period in the stack is)."""

    def __init__(self) -> None:
        self._samples: dict[MetricKey, dict[int, list[float]]] = defaultdict(dict)

    def put(self, metric: MetricKey, at: int, value: float) -> None:
        self._samples[metric].setdefault(at // 60, []).append(value)

    def statistic(self, metric: MetricKey, stat: str, end: int, period: int) -> Value:
        minutes = self._samples.get(metric, {})
        values = [
            value
            for minute in range((end - period) // 60, end // 60)
            for value in minutes.get(minute, ())
        ]
        if not values:
            return None
        if stat == "Maximum":
            return max(values)
        if stat == "Minimum":
            return min(values)
        if stat == "Sum":
            return sum(values)
        if stat == "Average":
            return sum(values) / len(values)
        if stat == "SampleCount":
            return float(len(values))
        raise ValueError(f"unsupported statistic {stat}")


@dataclass(frozen=True)
class Query:
    """One entry of an alarm's or policy's `Metrics`: a metric statistic or an expression."""

    id: str
    returns: bool
    expression: str | None = None
    metric: MetricKey | None = None
    stat: str = "Average"
    period: int = 60


def queries(entries: list[Mapping[str, Any]], default_period: int = 60) -> list[Query]:
    result = []
    for entry in entries:
        stat = entry.get("MetricStat")
        result.append(
            Query(
                id=entry["Id"],
                returns=bool(entry.get("ReturnData", True)),
                expression=entry.get("Expression"),
                metric=metric_key(stat["Metric"]) if stat else None,
                stat=stat["Stat"] if stat else "Average",
                period=int(stat.get("Period", default_period)) if stat else default_period,
            )
        )
    return result


def evaluate(store: MetricStore, entries: list[Query], end: int) -> Value:
    """The returned series' datapoint for the period ending at `end`."""
    values: dict[str, Value] = {}
    for query in entries:
        if query.metric is not None:
            values[query.id] = store.statistic(query.metric, query.stat, end, query.period)
    for query in entries:
        if query.expression is not None:
            values[query.id] = Expression(query.expression).value(values)
    (returned,) = [q.id for q in entries if q.returns]
    return values[returned]


_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(>=|<=|==|!=|[-+*/(),<>]))")


class Expression:
    """A CloudWatch metric-math expression over scalars (one aligned timestamp)."""

    def __init__(self, text: str) -> None:
        self._tokens = _tokenize(text)
        self._text = text

    def value(self, variables: Mapping[str, Value]) -> Value:
        self._variables = variables
        self._at = 0
        result = self._or()
        if self._at != len(self._tokens):
            raise ValueError(f"unexpected {self._tokens[self._at]!r} in {self._text!r}")
        return result

    def _peek(self) -> str | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._tokens[self._at]
        if expected is not None and token != expected:
            raise ValueError(f"expected {expected!r}, got {token!r} in {self._text!r}")
        self._at += 1
        return token

    def _or(self) -> Value:
        left = self._and()
        while self._peek() == "OR":
            self._take()
            right = self._and()
            left = None if left is None or right is None else float(bool(left) or bool(right))
        return left

    def _and(self) -> Value:
        left = self._comparison()
        while self._peek() == "AND":
            self._take()
            right = self._comparison()
            left = None if left is None or right is None else float(bool(left) and bool(right))
        return left

    def _comparison(self) -> Value:
        left = self._sum()
        while self._peek() in _COMPARE:
            compare = _COMPARE[self._take()]
            right = self._sum()
            left = None if left is None or right is None else float(compare(left, right))
        return left

    def _sum(self) -> Value:
        left = self._product()
        while self._peek() in ("+", "-"):
            sign = 1.0 if self._take() == "+" else -1.0
            right = self._product()
            left = None if left is None or right is None else left + sign * right
        return left

    def _product(self) -> Value:
        left = self._unary()
        while self._peek() in ("*", "/"):
            operator = self._take()
            right = self._unary()
            if left is None or right is None:
                left = None
            elif operator == "*":
                left = left * right
            else:
                left = None if right == 0 else left / right  # CloudWatch drops x/0 points
        return left

    def _unary(self) -> Value:
        if self._peek() == "-":
            self._take()
            operand = self._unary()
            return None if operand is None else -operand
        return self._atom()

    def _atom(self) -> Value:
        item = self._take()
        if item == "(":
            inner = self._or()
            self._take(")")
            return inner
        if re.fullmatch(r"\d+(?:\.\d+)?", item):
            return float(item)
        if self._peek() == "(":
            return self._call(item.upper())
        if item not in self._variables:
            raise ValueError(f"unknown id {item!r} in {self._text!r}")
        return self._variables[item]

    def _call(self, function: str) -> Value:
        self._take("(")
        args = [self._or()]
        while self._peek() == ",":
            self._take()
            args.append(self._or())
        self._take(")")
        if function == "FILL" and len(args) == 2:
            return args[1] if args[0] is None else args[0]
        if function == "IF" and len(args) == 3:
            if args[0] is None:
                return None
            return args[1] if args[0] else args[2]
        raise ValueError(f"unsupported function {function} in {self._text!r}")


_COMPARE = {
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: math.isclose(a, b),
    "!=": lambda a, b: not math.isclose(a, b),
}


def _tokenize(text: str) -> list[str]:
    tokens, at = [], 0
    while at < len(text.rstrip()):
        found = _TOKEN.match(text, at)
        if found is None:
            raise ValueError(f"cannot read {text[at:]!r}")
        tokens.append(next(group for group in found.groups() if group is not None))
        at = found.end()
    return tokens
