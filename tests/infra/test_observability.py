"""Observability: the dashboard shows the issue's widgets on the metrics the runtime emits, and
every alarm the issue lists notifies the alarm topic."""

from __future__ import annotations

import json

from runtime.common.metrics import NAMESPACE, Metric, dead_letter_dimensions, worker_dimensions
from runtime.common.names import Lane
from tests.infra.conftest import Synthesized
from tests.infra.template_queries import logical_id, one, resources


def _alarms(s: Synthesized) -> dict[str, dict]:
    """Alarms that notify the alarm topic (not the scaling alarms)."""
    topic = logical_id(s.raw, "AWS::SNS::Topic", "NotificationsAlarms")
    return {
        k: a
        for k, a in resources(s.raw, "AWS::CloudWatch::Alarm").items()
        if a["Properties"].get("AlarmActions") == [{"Ref": topic}]
    }


def _metric_names(alarm: dict) -> set[str]:
    props = alarm["Properties"]
    if "MetricName" in props:
        return {props["MetricName"]}
    return {m["MetricStat"]["Metric"]["MetricName"] for m in props["Metrics"] if "MetricStat" in m}


def test_every_issue_alarm_exists_per_lane_and_notifies_the_alarm_topic(
    synthesized: Synthesized,
) -> None:
    alarms = _alarms(synthesized)
    for lane in Lane:
        title = lane.value.title()
        lane_alarms = {k: a for k, a in alarms.items() if k.startswith(f"Observability{title}")}
        by_metric = {name: a for a in lane_alarms.values() for name in _metric_names(a)}
        # DLQ: any message
        dlq = logical_id(synthesized.raw, "AWS::SQS::Queue", f"Queues{title}DeadLetters")
        (dlq_alarm,) = [a for a in lane_alarms.values() if dlq in json.dumps(a)]
        assert dlq_alarm["Properties"]["Threshold"] == 1
        assert dlq_alarm["Properties"]["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        # Oldest message older than the lane's SLO
        slo = (
            synthesized.config.interactive if lane is Lane.INTERACTIVE else synthesized.config.batch
        ).oldest_message_slo_seconds
        assert by_metric["ApproximateAgeOfOldestMessage"]["Properties"]["Threshold"] == slo
        # Failure rate, low sync, GPU memory near full
        assert by_metric[Metric.JOBS_FAILED]["Properties"]["Threshold"] == (
            synthesized.config.failure_rate_alarm_percent
        )
        low_sync = by_metric[Metric.SYNC_CONFIDENCE]["Properties"]
        assert low_sync["Threshold"] == synthesized.config.low_sync_alarm_threshold
        assert low_sync["ComparisonOperator"] == "LessThanThreshold"
        assert by_metric[Metric.GPU_MEMORY_USED_PERCENT]["Properties"]["Threshold"] == (
            synthesized.config.gpu_memory_alarm_percent
        )
    # API 5xx
    assert any("5XXError" in _metric_names(a) for a in alarms.values())


def test_alarms_read_exactly_the_dimension_sets_the_emitters_write(
    synthesized: Synthesized,
) -> None:
    # The worker emits {Service: worker, Lane}; the dead-letter handler emits JobsFailed with
    # dead_letter_dimensions. CloudWatch matches only exact sets.
    emitted = [worker_dimensions(lane.value) for lane in Lane] + [
        dead_letter_dimensions(lane.value) for lane in Lane
    ]
    for alarm in _alarms(synthesized).values():
        for query in alarm["Properties"].get("Metrics", []):
            metric = query.get("MetricStat", {}).get("Metric")
            if metric and metric["Namespace"] == NAMESPACE:
                assert metric["MetricName"] in {m.value for m in Metric}
                dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
                assert dimensions in emitted, dimensions


def test_dashboard_shows_the_issue_widgets(synthesized: Synthesized) -> None:
    _, dashboard = one(synthesized.raw, "AWS::CloudWatch::Dashboard", "ObservabilityDashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    expected = [
        # API requests, 4xx/5xx, latency
        "Count",
        "4XXError",
        "5XXError",
        "Latency",
        # per lane queue depth, age of oldest message, DLQ depth
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        # jobs, per-job prepare/speak p50/p90, GPU, sync, running tasks
        Metric.JOBS_SUCCEEDED,
        Metric.JOBS_FAILED,
        Metric.PREPARE_MS,
        Metric.SPEAK_MS,
        Metric.GPU_UTILIZATION,
        Metric.GPU_MEMORY_USED_PERCENT,
        Metric.SYNC_CONFIDENCE,
        "RunningTaskCount",
        # deadlines (issue 9)
        Metric.JOBS_EXPIRED,
        Metric.JOBS_DEADLINE_CANCELLED,
        # equal content rendered once: cache hits and jobs waiting on another's render (issue 6)
        Metric.OUTPUT_CACHE_HITS,
        Metric.RENDER_CLAIM_WAITS,
        # cost per output minute by lane (issue 9)
        Metric.ESTIMATED_COST_USD,
        Metric.OUTPUT_SECONDS,
        "p90",
        "p50",
    ]
    for needle in expected:
        assert needle in body, needle
    for lane in Lane:
        assert f'\\"Lane\\",\\"{lane.value}\\"' in body, lane
