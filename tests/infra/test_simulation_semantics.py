"""The simulation's AWS semantics on their own (docs/simulation.md): metric math with missing data,
alarm datapoints, SQS redrive and sleep, scheduled queue touches, and step-scaling cooldowns.
Hand-made inputs, no template."""

from __future__ import annotations

from infra.simulation.alarms import Alarm
from infra.simulation.metrics import Expression, MetricStore, Query, key
from infra.simulation.schedules import rate_seconds, scheduled_touches
from infra.simulation.sqs import SLEEPS_AFTER_SECONDS, WAKE_DELAY_SECONDS, Queue

FAILURE_RATE = "IF(succeeded + failed > 0, 100 * failed / (succeeded + failed), 0)"
FILLED = (
    "IF(FILL(succeeded, 0) + FILL(failed, 0) > 0,"
    " 100 * FILL(failed, 0) / (FILL(succeeded, 0) + FILL(failed, 0)), 0)"
)


def test_a_window_with_only_failures_is_no_data_without_fill_and_100_percent_with_it() -> None:
    only_failures = {"succeeded": None, "failed": 4.0}
    assert Expression(FAILURE_RATE).value(only_failures) is None
    assert Expression(FILLED).value(only_failures) == 100.0
    assert Expression(FILLED).value({"succeeded": 3.0, "failed": 1.0}) == 25.0


def _alarm(treat_missing: str, datapoints: int = 2, periods: int = 3) -> Alarm:
    metric = key("MuseTalk", "Errors")
    return Alarm(
        id="a",
        description="a",
        queries=[Query(id="m", returns=True, metric=metric, stat="Sum", period=60)],
        period=60,
        evaluation_periods=periods,
        datapoints_to_alarm=datapoints,
        threshold=0,
        comparison="GreaterThanThreshold",
        treat_missing=treat_missing,
        actions=[],
    )


def test_an_alarm_needs_m_of_n_breaching_datapoints_and_reads_a_minute_late() -> None:
    store = MetricStore()
    alarm = _alarm("notBreaching")
    store.put(key("MuseTalk", "Errors"), 600, 1)  # minute 10
    alarm.evaluate(store, 660)  # newest datapoint is minute 9: nothing yet
    assert alarm.state == "OK"
    store.put(key("MuseTalk", "Errors"), 670, 1)  # minute 11
    alarm.evaluate(store, 720)  # minutes 9..10: one breach of two needed
    assert alarm.state == "OK"
    alarm.evaluate(store, 780)  # minutes 10..11: two breaches
    assert alarm.state == "ALARM"


def test_all_missing_data_keeps_or_drops_state_as_treat_missing_data_says() -> None:
    store = MetricStore()
    for treat, expected in (
        ("notBreaching", "OK"),
        ("breaching", "ALARM"),
        ("missing", "INSUFFICIENT_DATA"),
        ("ignore", "ALARM"),
    ):
        alarm = _alarm(treat)
        alarm.state = "ALARM"
        alarm.evaluate(store, 3600)
        assert alarm.state == expected, treat


def test_a_message_received_max_receive_count_times_moves_to_the_dlq_on_the_next_receive() -> None:
    dlq = Queue("dlq", visibility_timeout=30)
    queue = Queue("q", visibility_timeout=30, dead_letter=dlq, max_receive_count=3)
    queue.send("job-1", now=0)
    for attempt in range(3):
        message, moved = queue.receive(now=attempt * 60)
        assert message is not None
        assert message.receive_count == attempt + 1
        assert not moved
    message, moved = queue.receive(now=180)
    assert message is None
    assert [m.job for m in moved] == ["job-1"]
    assert [m.job for m in dlq.messages] == ["job-1"]


def _published(queue: Queue, store: MetricStore, at: int) -> bool:
    queue.publish(store, at)
    visible = key("AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue.id)
    return store.statistic(visible, "Maximum", (at // 60 + 1) * 60, 60) is not None


def test_a_queue_nothing_accessed_for_six_hours_publishes_no_metrics() -> None:
    store, queue = MetricStore(), Queue("q", visibility_timeout=30)
    assert _published(queue, store, SLEEPS_AFTER_SECONDS)  # six hours exactly: still active
    assert not _published(queue, store, SLEEPS_AFTER_SECONDS + 60)


def test_an_access_wakes_a_sleeping_queue_but_its_metrics_return_after_the_wake_delay() -> None:
    store, queue = MetricStore(), Queue("q", visibility_timeout=30)
    woken = 8 * 3600
    queue.send("job-1", now=woken)  # the morning's first message
    assert not _published(queue, store, woken)
    assert not _published(queue, store, woken + WAKE_DELAY_SECONDS - 60)
    assert _published(queue, store, woken + WAKE_DELAY_SECONDS)


def test_get_queue_attributes_within_six_hours_keeps_the_metrics_flowing() -> None:
    store, queue = MetricStore(), Queue("q", visibility_timeout=30)
    for at in range(0, 24 * 3600, 60):
        if at % (5 * 3600) == 0:
            queue.access(at)  # a scheduled GetQueueAttributes every five hours
        assert _published(queue, store, at), at
    queue.send("job-1", now=24 * 3600)
    assert _published(queue, store, 24 * 3600)


def test_a_queue_holding_a_message_stays_active_without_any_access() -> None:
    store, queue = MetricStore(), Queue("q", visibility_timeout=30)
    queue.send("job-1", now=0)
    assert _published(queue, store, 3600)
    assert _published(queue, store, 10 * 3600)  # nobody received it; it is still there


def _schedule(rule_state: str = "ENABLED", action: str = "sqs:GetQueueAttributes") -> dict:
    """A rule invoking a function whose role may take `action` on queue Q only."""
    return {
        "Q": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Other": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
        "Fn": {
            "Type": "AWS::Lambda::Function",
            "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}},
        },
        "Policy": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "Roles": [{"Ref": "Role"}],
                "PolicyDocument": {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": [action, "sqs:SendMessage"],
                            "Resource": {"Fn::GetAtt": ["Q", "Arn"]},
                        }
                    ]
                },
            },
        },
        "Rule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "ScheduleExpression": "rate(5 minutes)",
                "State": rule_state,
                "Targets": [{"Arn": {"Fn::GetAtt": ["Fn", "Arn"]}, "Id": "t"}],
            },
        },
    }


def test_a_scheduled_function_touches_only_the_queues_its_role_may_read() -> None:
    (touch,) = scheduled_touches(_schedule())
    assert (touch.rule, touch.function, touch.interval, touch.queues) == (
        "Rule",
        "Fn",
        300,
        frozenset({"Q"}),
    )
    assert scheduled_touches(_schedule(action="sqs:Get*")) != ()
    assert scheduled_touches(_schedule(action="sqs:ReceiveMessage")) == ()
    assert scheduled_touches(_schedule(rule_state="DISABLED")) == ()
    assert (rate_seconds("rate(1 hour)"), rate_seconds("cron(0 * * * ? *)")) == (3600, None)
