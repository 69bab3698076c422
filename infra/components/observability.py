"""The CloudWatch dashboard and the alarms that notify the alarm topic.

Worker and API metric names, namespace and dimension sets come from `runtime.common.metrics`, the
same definitions the emitters use, so a widget or alarm cannot point at a metric nobody emits.

Each alarm watches what still shows the failure once AWS's loops have run: a dead-letter queue is
emptied by its Lambda within seconds, so its alarm adds the messages the DLQ *received* to those
visible; failure-rate math FILLs missing series, so a window with only failures reads 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from runtime.common.metrics import NAMESPACE, Metric, dead_letter_dimensions, worker_dimensions
from runtime.common.names import Lane

_PERIOD = Duration.minutes(5)
_MINUTE = Duration.minutes(1)
_WIDTH = 8
# API 5xx: alarm when more than this fraction of requests fail over two of three periods.
_API_5XX_RATE = 0.05
# A task waiting this long for a host is past any cold start: capacity (spot, quota) is short.
PENDING_TASK_ALARM_MINUTES = 20


@dataclass(frozen=True, kw_only=True)
class LaneWatch:
    """What to watch for one lane."""

    lane: Lane
    queue: sqs.IQueue
    dead_letter_queue: sqs.IQueue
    service: ecs.BaseService
    cluster: ecs.ICluster
    oldest_message_slo_seconds: int


@dataclass(frozen=True, kw_only=True)
class AlarmThresholds:
    failure_rate_percent: float
    low_sync_score: float
    gpu_memory_percent: float


# Failed (worker or dead-letter handler) over all outcomes; FILL gives a series that is absent in
# a window (no success at all) zeros, so such a window reads 100 % instead of no data.
_OK = "FILL(succeeded, 0)"
_FAILED = "(FILL(failed, 0) + FILL(dead, 0))"
FAILURE_RATE_EXPRESSION = f"IF({_OK} + {_FAILED} > 0, 100 * {_FAILED} / ({_OK} + {_FAILED}), 0)"


class _LaneMetrics:
    """One lane's metrics, shared by its widgets and its alarms."""

    def __init__(self, watch: LaneWatch) -> None:
        self.watch = watch
        self.title = watch.lane.value.title()
        queue, dead_letters = watch.queue, watch.dead_letter_queue
        self.visible = queue.metric_approximate_number_of_messages_visible(
            period=_MINUTE, statistic="Maximum"
        )
        self.in_flight = queue.metric_approximate_number_of_messages_not_visible(
            period=_MINUTE, statistic="Maximum"
        )
        self.oldest = queue.metric_approximate_age_of_oldest_message(
            period=_MINUTE, statistic="Maximum"
        )
        self.dlq_depth = dead_letters.metric_approximate_number_of_messages_visible(
            period=_MINUTE, statistic="Maximum"
        )
        self.dlq_received = dead_letters.metric_number_of_messages_received(
            period=_MINUTE, statistic="Sum"
        )
        self.succeeded = self.worker(Metric.JOBS_SUCCEEDED, "Sum")
        self.failed = self.worker(Metric.JOBS_FAILED, "Sum")
        self.dead_lettered = cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=Metric.JOBS_FAILED.value,
            dimensions_map=dead_letter_dimensions(watch.lane.value),
            statistic="Sum",
            period=_PERIOD,
            label="JobsFailed (dead-lettered)",
        )

    def worker(
        self, metric: Metric, statistic: str, period: Duration = _PERIOD
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=metric.value,
            dimensions_map=worker_dimensions(self.watch.lane.value),
            statistic=statistic,
            period=period,
            label=f"{metric.value} {statistic}",
        )

    def ecs_service(self, metric_name: str, statistic: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="ECS/ContainerInsights",
            metric_name=metric_name,
            dimensions_map={
                "ClusterName": self.watch.cluster.cluster_name,
                "ServiceName": self.watch.service.service_name,
            },
            statistic=statistic,
            period=_MINUTE,
        )


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        rest_api: apigateway.RestApi,
        lanes: list[LaneWatch],
        alarm_topic: sns.ITopic,
        thresholds: AlarmThresholds,
        undeliverable_webhooks: sqs.IQueue,
        functions: dict[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self._action = cloudwatch_actions.SnsAction(alarm_topic)
        self.alarms: list[cloudwatch.Alarm] = []

        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=dashboard_name, default_interval=Duration.hours(3)
        )
        self._api(rest_api)
        for watch in lanes:
            self._lane(watch, thresholds)
        self._webhooks(undeliverable_webhooks)
        self._functions(functions)
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24)
        )

    # API --------------------------------------------------------------------------------------

    def _api(self, rest_api: apigateway.RestApi) -> None:
        requests = rest_api.metric_count(period=_PERIOD, statistic="Sum")
        errors_4xx = rest_api.metric_client_error(period=_PERIOD, statistic="Sum")
        errors_5xx = rest_api.metric_server_error(period=_PERIOD, statistic="Sum")
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown="# API", width=24, height=1),
            _graph("API requests", [requests]),
            _graph("API 4xx / 5xx", [errors_4xx, errors_5xx]),
            _graph(
                "API latency",
                [rest_api.metric_latency(period=_PERIOD, statistic=p) for p in ("p50", "p90")],
            ),
        )
        self._alarm(
            "Api5xxRate",
            description="More than 5% of API requests end in a 5xx",
            metric=rest_api.metric_server_error(period=_PERIOD, statistic="Average"),
            threshold=_API_5XX_RATE,
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )

    # Lanes ------------------------------------------------------------------------------------

    def _lane(self, watch: LaneWatch, thresholds: AlarmThresholds) -> None:
        metrics = _LaneMetrics(watch)
        self._lane_widgets(metrics)
        self._delivery_alarms(metrics)
        self._render_alarms(metrics, thresholds)

    def _lane_widgets(self, m: _LaneMetrics) -> None:
        worker = m.worker
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown=f"# {m.title} lane", width=24, height=1),
            _graph("Queue depth", [m.visible, m.in_flight]),
            _graph("Age of oldest message (s)", [m.oldest]),
            _graph("Dead-letter queue depth", [m.dlq_depth]),
            _graph("Jobs succeeded / failed", [m.succeeded, m.failed]),
            _graph(
                "Estimated cost per output minute (USD)",
                [
                    cloudwatch.MathExpression(
                        expression="IF(output > 0, 60 * cost / output, 0)",
                        using_metrics={
                            "cost": worker(Metric.ESTIMATED_COST_USD, "Sum"),
                            "output": worker(Metric.OUTPUT_SECONDS, "Sum"),
                        },
                        label=f"{m.title}: USD per output minute",
                        period=_PERIOD,
                    ),
                ],
            ),
            _graph(
                "Deadlines: expired before start / cancelled while running",
                [worker(Metric.JOBS_EXPIRED, "Sum"), worker(Metric.JOBS_DEADLINE_CANCELLED, "Sum")],
            ),
            _graph(
                "Prepare / speak time (ms)",
                [
                    worker(metric, stat)
                    for metric in (Metric.PREPARE_MS, Metric.SPEAK_MS)
                    for stat in ("p50", "p90")
                ],
            ),
            _graph("Running tasks", [m.ecs_service("RunningTaskCount", "Average")]),
            _graph(
                "GPU utilization / memory (%)",
                [
                    worker(Metric.GPU_UTILIZATION, "Average", _MINUTE),
                    worker(Metric.GPU_MEMORY_USED_PERCENT, "Maximum", _MINUTE),
                ],
            ),
            _graph(
                "Sync confidence",
                [worker(Metric.SYNC_CONFIDENCE, "Average"), worker(Metric.SYNC_CONFIDENCE, "p10")],
            ),
            _graph(
                "Low-sync jobs / OOM halvings",
                [
                    worker(Metric.LOW_SYNC_JOBS, "Sum"),
                    worker(Metric.OOM_HALVINGS, "Sum"),
                ],
            ),
            _graph(
                "Output cache hits / render-claim waits",
                [
                    worker(Metric.OUTPUT_CACHE_HITS, "Sum"),
                    worker(Metric.RENDER_CLAIM_WAITS, "Sum"),
                ],
            ),
        )

    def _delivery_alarms(self, m: _LaneMetrics) -> None:
        """Jobs that do not reach a worker: dead-lettered, no host, no weights, waiting too long."""
        lane, title = m.watch.lane, m.title
        self._alarm(
            f"{title}DeadLetters",
            description=f"A job message of the {lane} lane reached its dead-letter queue",
            metric=cloudwatch.MathExpression(
                expression="FILL(visible, 0) + FILL(received, 0)",
                using_metrics={"visible": m.dlq_depth, "received": m.dlq_received},
                label="Dead letters visible + received",
                period=_MINUTE,
            ),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )
        self._alarm(
            f"{title}TasksWaitingForCapacity",
            description=f"A {lane} task waited {PENDING_TASK_ALARM_MINUTES} minutes for a GPU host "
            "(spot capacity or the vCPU quota is short)",
            metric=m.ecs_service("PendingTaskCount", "Minimum"),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=PENDING_TASK_ALARM_MINUTES,
        )
        self._alarm(
            f"{title}WeightsMissing",
            description=f"A {lane} worker is waiting for the weights manifest (upload the "
            "weights: docs/deploy.md)",
            metric=m.worker(Metric.WEIGHTS_MISSING, "Maximum"),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=2,
        )
        self._alarm(
            f"{title}OldestMessage",
            description=f"The oldest {lane} job waited longer than its "
            f"{m.watch.oldest_message_slo_seconds} s SLO",
            metric=m.oldest,
            threshold=m.watch.oldest_message_slo_seconds,
            evaluation_periods=2,
        )

    def _render_alarms(self, m: _LaneMetrics, thresholds: AlarmThresholds) -> None:
        """Renders that run but go wrong: failing, poorly synced, or near the GPU's memory."""
        lane, title = m.watch.lane, m.title
        self._alarm(
            f"{title}FailureRate",
            description=f"More than {thresholds.failure_rate_percent}% of {lane} jobs failed",
            metric=cloudwatch.MathExpression(
                expression=FAILURE_RATE_EXPRESSION,
                using_metrics={
                    "succeeded": m.succeeded,
                    "failed": m.failed,
                    "dead": m.dead_lettered,
                },
                label="Failure rate (%)",
                period=_PERIOD,
            ),
            threshold=thresholds.failure_rate_percent,
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )
        self._alarm(
            f"{title}LowSync",
            description=f"Average lip-sync confidence of {lane} renders is below "
            f"{thresholds.low_sync_score}",
            metric=m.worker(Metric.SYNC_CONFIDENCE, "Average", Duration.minutes(15)),
            threshold=thresholds.low_sync_score,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        )
        self._alarm(
            f"{title}GpuMemory",
            description=f"A GPU of the {lane} lane uses more than "
            f"{thresholds.gpu_memory_percent}% of its memory",
            metric=m.worker(Metric.GPU_MEMORY_USED_PERCENT, "Maximum", _MINUTE),
            threshold=thresholds.gpu_memory_percent,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        )

    def _functions(self, functions: dict[str, lambda_.IFunction]) -> None:
        """Any error of a background function is a job or webhook nobody handles."""
        for name, function in functions.items():
            self._alarm(
                f"{name}Errors",
                description=f"The {name} Lambda function failed (see its log group)",
                metric=function.metric_errors(period=_PERIOD, statistic="Sum"),
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            )

    def _webhooks(self, dead_letter_queue: sqs.IQueue) -> None:
        undeliverable = dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=_MINUTE, statistic="Maximum"
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown="# Webhooks", width=24, height=1),
            _graph("Undeliverable webhooks (DLQ depth)", [undeliverable]),
        )
        self._alarm(
            "UndeliverableWebhooks",
            description="A webhook failed every delivery attempt and is in the webhook DLQ",
            metric=undeliverable,
            threshold=0,
        )

    def _alarm(
        self,
        construct_id: str,
        *,
        description: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        ),
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            # No traffic is not an incident: an idle batch lane emits nothing.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)


def _graph(title: str, metrics: list[cloudwatch.IMetric]) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=metrics, width=_WIDTH, height=6)
