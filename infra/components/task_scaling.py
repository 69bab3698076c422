"""How many GPU tasks a lane runs: exactly what its backlog needs, ceil(jobs / backlog_per_task),
where jobs are the lane queue's visible plus in-flight messages.

Exact capacity, not a change: the count is a function of the backlog alone, never of the current
count, so a GPU cold start (host launch, image pull, weight sync: minutes in which nothing runs)
and the metrics' minute or two of delay cannot make it ask again and again. A per-task ratio with
target tracking multiplies the current count by a stale metric and overshoots; a "+1 while none
runs" step adds a task every cooldown for the whole cold start. Two step policies on one metric:

- `Backlog` (any job in the lane, every minute): the step that holds the job count sets the
  count; a smaller count is a scale-in, which its cooldown spaces out;
- `Idle` (no job for `IDLE_MINUTES`): back to the lane's minimum (zero for batch).

Busy tasks hold ECS scale-in protection, so a scale-in stops idle tasks only.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# Application Auto Scaling allows at most this many step adjustments in one policy.
MAX_STEPS = 20
IDLE_MINUTES = 10
# A smaller count than the current one waits this long after the previous change.
BACKLOG_COOLDOWN = Duration.minutes(5)
_MINUTE = Duration.minutes(1)


@dataclass(frozen=True, kw_only=True)
class LaneScaling:
    min_tasks: int
    max_tasks: int
    backlog_per_task_target: int  # jobs (waiting or running) per task


class TaskScaling(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: ecs.ICluster,
        service: ecs.BaseService,
        queue: sqs.IQueue,
        scaling: LaneScaling,
    ) -> None:
        super().__init__(scope, construct_id)
        if scaling.max_tasks > MAX_STEPS:
            raise ValueError(
                f"max_tasks above {MAX_STEPS} needs more step adjustments than allowed"
            )
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            service_namespace=appscaling.ServiceNamespace.ECS,
            resource_id=f"service/{cluster.cluster_name}/{service.service_name}",
            scalable_dimension="ecs:service:DesiredCount",
            min_capacity=scaling.min_tasks,
            max_capacity=scaling.max_tasks,
            # The service-linked role Application Auto Scaling creates for ECS (what
            # Service.autoScaleTaskCount uses); a fresh role would have no permissions.
            role=iam.Role.from_role_arn(
                self,
                "ScalingRole",
                Stack.of(self).format_arn(
                    service="iam",
                    region="",
                    resource="role/aws-service-role/ecs.application-autoscaling.amazonaws.com",
                    resource_name="AWSServiceRoleForApplicationAutoScaling_ECSService",
                ),
            ),
        )
        jobs = cloudwatch.MathExpression(
            expression="FILL(visible, 0) + FILL(inflight, 0)",
            using_metrics={
                "visible": queue.metric_approximate_number_of_messages_visible(
                    period=_MINUTE, statistic="Maximum"
                ),
                "inflight": queue.metric_approximate_number_of_messages_not_visible(
                    period=_MINUTE, statistic="Maximum"
                ),
            },
            label="Jobs in the lane (waiting + running)",
            period=_MINUTE,
        )
        self.backlog = self._policy("Backlog", BACKLOG_COOLDOWN)
        per_task = scaling.backlog_per_task_target
        for tasks in range(1, scaling.max_tasks + 1):
            # Alarm threshold 1 job: the bounds are jobs - 1, so k tasks for jobs in
            # [(k-1)*per_task + 1, k*per_task]; the last step takes everything above.
            self.backlog.add_adjustment(
                adjustment=tasks,
                lower_bound=(tasks - 1) * per_task,
                upper_bound=tasks * per_task if tasks < scaling.max_tasks else None,
            )
        self._alarm(
            "BacklogAlarm",
            jobs,
            self.backlog,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            periods=1,
            description="Jobs in the lane: set the task count the backlog needs",
        )
        self.idle = self._policy("Idle", BACKLOG_COOLDOWN)
        self.idle.add_adjustment(adjustment=scaling.min_tasks, upper_bound=0)
        self._alarm(
            "IdleAlarm",
            jobs,
            self.idle,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            periods=IDLE_MINUTES,
            description=f"No job in the lane for {IDLE_MINUTES} minutes: back to the minimum",
        )

    def _policy(self, construct_id: str, cooldown: Duration) -> appscaling.StepScalingAction:
        return appscaling.StepScalingAction(
            self,
            construct_id,
            scaling_target=self.target,
            adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY,
            cooldown=cooldown,
            metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
        )

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        action: appscaling.StepScalingAction,
        *,
        comparison: cloudwatch.ComparisonOperator,
        periods: int,
        description: str,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=1,
            comparison_operator=comparison,
            evaluation_periods=periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.ApplicationScalingAction(action))
