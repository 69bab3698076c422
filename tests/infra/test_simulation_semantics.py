"""The simulation's AWS semantics on their own (docs/simulation.md): metric math with missing data,
alarm datapoints, SQS redrive, and step-scaling cooldowns. Hand-made inputs, no template."""

from __future__ import annotations

from infra.simulation.alarms import Alarm
from infra.simulation.metrics import Expression, MetricStore, Query, key
from infra.simulation.sqs import Queue

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
