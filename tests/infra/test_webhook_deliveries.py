"""Webhook deliveries infra: the queue dead-letters after WEBHOOK_MAX_RECEIVES attempts into its own
DLQ with an alarm; the deliveries Lambda consumes it with the signing secret; the API and the
worker can only send to it."""

from __future__ import annotations

from runtime.common.events import WEBHOOK_MAX_RECEIVES
from runtime.common.names import EnvVar
from tests.infra.conftest import Synthesized
from tests.infra.template_queries import actions_on, logical_id, mentions, one, resources


def _queue_id(synthesized: Synthesized, name_suffix: str) -> str:
    for resource_id, queue in resources(synthesized.raw, "AWS::SQS::Queue").items():
        if queue["Properties"].get("QueueName", "").endswith(name_suffix):
            return resource_id
    raise AssertionError(f"no queue named *{name_suffix}")


def test_undeliverable_webhooks_land_in_their_own_dlq_with_an_alarm(
    synthesized: Synthesized,
) -> None:
    queue_id = _queue_id(synthesized, "-webhooks")
    dlq_id = _queue_id(synthesized, "-webhooks-dlq")
    queue = resources(synthesized.raw, "AWS::SQS::Queue")[queue_id]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == WEBHOOK_MAX_RECEIVES
    assert mentions(redrive["deadLetterTargetArn"], dlq_id)
    alarms = [
        alarm["Properties"]
        for alarm in resources(synthesized.raw, "AWS::CloudWatch::Alarm").values()
        if any(mentions(d.get("Value"), dlq_id) for d in alarm["Properties"].get("Dimensions", []))
    ]
    (alarm,) = alarms
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Threshold"] == 0
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"]


def test_the_deliveries_lambda_consumes_the_queue_with_the_secret_and_one_attempt_per_call(
    synthesized: Synthesized,
) -> None:
    queue_id = _queue_id(synthesized, "-webhooks")
    function_id, function = one(synthesized.raw, "AWS::Lambda::Function", "ApiWebhookDeliveries")
    props = function["Properties"]
    assert props["Handler"] == "runtime.api.entrypoints.webhook_deliveries.lambda_handler"
    assert EnvVar.WEBHOOK_SECRET_ARN.value in props["Environment"]["Variables"]
    (mapping,) = [
        m["Properties"]
        for m in resources(synthesized.raw, "AWS::Lambda::EventSourceMapping").values()
        if mentions(m["Properties"]["EventSourceArn"], queue_id)
    ]
    assert mentions(mapping["FunctionName"], function_id)
    assert mapping["BatchSize"] == 1
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    role_id = logical_id(synthesized.raw, "AWS::IAM::Role", "ApiWebhookDeliveriesServiceRole")
    assert "sqs:ReceiveMessage" in actions_on(synthesized.raw, role_id, queue_id)


def test_the_api_and_the_worker_may_only_send_to_the_webhook_queue(
    synthesized: Synthesized,
) -> None:
    queue_id = _queue_id(synthesized, "-webhooks")
    api_role = logical_id(synthesized.raw, "AWS::IAM::Role", "ApiHandlerServiceRole")
    assert actions_on(synthesized.raw, api_role, queue_id) == {
        "sqs:SendMessage",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    _, api = one(synthesized.raw, "AWS::Lambda::Function", "ApiHandler")
    assert EnvVar.WEBHOOK_QUEUE_URL.value in api["Properties"]["Environment"]["Variables"]
    assert EnvVar.WEBHOOK_SECRET_ARN.value not in api["Properties"]["Environment"]["Variables"]
    for task_definition in resources(synthesized.raw, "AWS::ECS::TaskDefinition").values():
        (container,) = task_definition["Properties"]["ContainerDefinitions"]
        names = {variable["Name"] for variable in container["Environment"]}
        assert EnvVar.WEBHOOK_QUEUE_URL.value in names
