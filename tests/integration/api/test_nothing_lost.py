"""Nothing accepted is lost: a failed enqueue fails the request, and either the caller's retry or
the sweeper completes it; concurrent retries never make a second job."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from botocore.exceptions import ClientError

from runtime.api import idempotent_submit, sweeper
from runtime.api.entrypoints import sweeper as sweeper_entrypoint
from runtime.api.jobs import derive_job_id
from runtime.api.models import SubmitJobRequest
from runtime.common.jobs import JobMessage
from runtime.common.names import Lane
from runtime.local.resources import LocalResources
from tests.integration.api.conftest import Call, Submit, header, queue_messages
from tests.support.api_events import FakeLambdaContext


def _intercept(
    monkeypatch: pytest.MonkeyPatch,
    sqs: Any,
    method: str,
    refuse: Callable[[int], ClientError | None],
) -> list[dict[str, Any]]:
    """Wrap one SQS client method: each call's arguments are recorded, and the call is refused
    with what `refuse(call number)` gives, or passed on to SQS when it gives None."""
    real = getattr(sqs, method)
    calls: list[dict[str, Any]] = []

    def call(**kwargs: Any) -> Any:
        calls.append(kwargs)
        error = refuse(len(calls))
        if error is not None:
            raise error
        return real(**kwargs)

    monkeypatch.setattr(sqs, method, call)
    return calls


def _fail_first_sends(monkeypatch: pytest.MonkeyPatch, times: int = 1) -> list[dict[str, Any]]:
    """Make the API's SQS client refuse its next `times` sends, as a throttled SQS would."""
    throttled = ClientError(
        {"Error": {"Code": "ServiceUnavailable", "Message": "try later"}}, "SendMessage"
    )
    return _intercept(
        monkeypatch,
        idempotent_submit.runtime().ctx.sqs,
        "send_message",
        lambda number: throttled if number <= times else None,
    )


def _unsent_job(
    submit_job: Submit,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    *,
    refusals: int = 1,
    **overrides: Any,
) -> str:
    """A job submitted under `key` while SQS refuses the next `refusals` sends (the API's and
    then the sweeper's): recorded and answered 503, not on the queue."""
    _fail_first_sends(monkeypatch, times=refusals)
    assert submit_job(key, **overrides)["statusCode"] == 503
    return derive_job_id("tenant-a", key)


def _sweeper_context(ahead: timedelta = timedelta(0)) -> Any:
    """The sweeper's context on the API's runtime, its clock `ahead` of now."""
    ctx = idempotent_submit.runtime().ctx
    return dataclasses.replace(ctx, clock=lambda: ctx.now() + ahead)


def _age_past_grace(deployment: LocalResources, aws: Any, job_id: str) -> None:
    """Age the job's record past the sweeper's grace period (the index sort key is created_at)."""
    aws("dynamodb").update_item(
        TableName=deployment.names.jobs_table,
        Key={"pk": {"S": f"JOB#{job_id}"}},
        UpdateExpression="SET created_at = :t",
        ExpressionAttributeValues={":t": {"S": "2020-01-01T00:00:00.000000Z"}},
    )


def _unsent(deployment: LocalResources, aws: Any, job_id: str) -> bool:
    item = aws("dynamodb").get_item(
        TableName=deployment.names.jobs_table, Key={"pk": {"S": f"JOB#{job_id}"}}
    )["Item"]
    return "unsent_lane" in item


def test_a_failed_enqueue_is_a_503_and_the_retry_with_the_same_key_completes_it(
    call_api: Call,
    job_body: dict[str, Any],
    deployment: LocalResources,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fail_first_sends(monkeypatch)
    headers = {"Idempotency-Key": "retry-me"}
    # When SQS refuses the first send
    failed = call_api("POST", "/v1/jobs", body=job_body, headers=headers)
    # Then the caller is told to retry, and the job is recorded as not yet sent
    assert failed["statusCode"] == 503
    assert failed["json"]["error"]["code"] == "DEPENDENCY_UNAVAILABLE"
    assert header(failed, "Retry-After") == "2"
    job_id = derive_job_id("tenant-a", "retry-me")
    assert _unsent(deployment, aws, job_id)
    assert queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE]) == []
    # When the caller retries with the same key
    retried = call_api("POST", "/v1/jobs", body=job_body, headers=headers)
    # Then the same job is accepted and its one message is on the queue
    assert retried["statusCode"] == 202
    assert retried["json"]["job_id"] == job_id
    messages = queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE])
    assert [JobMessage.model_validate_json(m["Body"]).job_id for m in messages] == [job_id]
    assert not _unsent(deployment, aws, job_id)


def test_the_sweeper_sends_a_job_whose_caller_never_retried(
    submit_job: Submit, deployment: LocalResources, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job whose enqueue failed and whose caller went away
    job_id = _unsent_job(submit_job, monkeypatch, "gone")
    # When the sweeper runs inside the grace period, it leaves the job alone
    early = sweeper.sweep(_sweeper_context())
    assert early.resent == {Lane.INTERACTIVE: 0, Lane.BATCH: 0}
    # When it runs after the grace period
    later = _sweeper_context(timedelta(seconds=sweeper.GRACE_SECONDS + 1))
    result = sweeper.sweep(later)
    # Then the job is sent once and leaves the unsent index
    assert result.resent[Lane.INTERACTIVE] == 1
    messages = queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE])
    assert [JobMessage.model_validate_json(m["Body"]).job_id for m in messages] == [job_id]
    assert not _unsent(deployment, aws, job_id)
    assert sweeper.sweep(later).resent[Lane.INTERACTIVE] == 0


def test_a_send_the_sweeper_cannot_make_stays_flagged_for_the_next_run(
    submit_job: Submit, deployment: LocalResources, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The API's send and the sweeper's first try are refused
    job_id = _unsent_job(submit_job, monkeypatch, "stubborn", refusals=2)
    later = _sweeper_context(timedelta(hours=1))
    first = sweeper.sweep(later)
    assert (first.failed, first.resent[Lane.INTERACTIVE]) == (1, 0)
    assert _unsent(deployment, aws, job_id)
    second = sweeper.sweep(later)
    assert (second.failed, second.resent[Lane.INTERACTIVE]) == (0, 1)
    assert not _unsent(deployment, aws, job_id)


def test_the_sweeper_drops_the_flag_of_a_job_cancelled_before_it_was_sent(
    call_api: Call,
    submit_job: Submit,
    deployment: LocalResources,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = _unsent_job(submit_job, monkeypatch, "cancel-unsent")
    # Cancelling clears the flag itself; put it back to model a cancel racing the sweeper
    call_api("DELETE", f"/v1/jobs/{job_id}")
    aws("dynamodb").update_item(
        TableName=deployment.names.jobs_table,
        Key={"pk": {"S": f"JOB#{job_id}"}},
        UpdateExpression="SET unsent_lane = :l",
        ExpressionAttributeValues={":l": {"S": "interactive"}},
    )
    result = sweeper.sweep(_sweeper_context(timedelta(hours=1)))
    assert (result.resent[Lane.INTERACTIVE], result.cleared) == (0, 1)
    assert queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE]) == []
    assert not _unsent(deployment, aws, job_id)


def test_the_sweeper_lambda_resends_and_emits_its_metric(
    submit_job: Submit,
    deployment: LocalResources,
    aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id = _unsent_job(submit_job, monkeypatch, "old", lane="batch")
    _age_past_grace(deployment, aws, job_id)
    sweeper_entrypoint._context.cache_clear()
    capsys.readouterr()
    result = sweeper_entrypoint.lambda_handler({}, FakeLambdaContext())
    assert result == {"resent": 1, "cleared": 0, "failed": 0, "queues_touched": 3}
    assert len(queue_messages(aws("sqs"), deployment.queue_urls[Lane.BATCH])) == 1
    emf = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    reenqueued = [doc for doc in emf if "JobsReenqueued" in doc]
    assert len(reenqueued) == 1
    assert reenqueued[0]["JobsReenqueued"] in (1, [1])
    assert reenqueued[0]["Lane"] == "batch"
    assert reenqueued[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MuseTalk"


def _spy_touches(monkeypatch: pytest.MonkeyPatch, *, refuse: bool = False) -> list[dict[str, Any]]:
    """Record the sweeper's GetQueueAttributes calls (passed on to SQS, or refused)."""
    sweeper_entrypoint._context.cache_clear()
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetQueueAttributes")
    return _intercept(
        monkeypatch,
        sweeper_entrypoint._context().sqs,
        "get_queue_attributes",
        lambda number: denied if refuse else None,
    )


def _unpolled_queue_urls(deployment: LocalResources) -> list[str]:
    """The lane queues and the undeliverable webhooks' queue: nothing polls them."""
    lanes = [deployment.queue_urls[lane] for lane in Lane]
    return sorted([*lanes, deployment.webhook_dead_letter_queue_url])


def test_every_sweep_touches_each_unpolled_queue_so_cloudwatch_keeps_its_metrics(
    deployment: LocalResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQS stops a queue's metrics after six idle hours; the scaling alarms read them
    touched = _spy_touches(monkeypatch)
    result = sweeper_entrypoint.lambda_handler({}, FakeLambdaContext())
    assert sorted(call["QueueUrl"] for call in touched) == _unpolled_queue_urls(deployment)
    assert result["queues_touched"] == len(_unpolled_queue_urls(deployment))


def test_a_queue_the_sweeper_cannot_touch_does_not_stop_the_sweep(
    submit_job: Submit, deployment: LocalResources, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _unsent_job(submit_job, monkeypatch, "touch-refused", lane="batch")
    _age_past_grace(deployment, aws, job_id)
    touched = _spy_touches(monkeypatch, refuse=True)
    result = sweeper_entrypoint.lambda_handler({}, FakeLambdaContext())
    assert len(touched) == len(_unpolled_queue_urls(deployment))
    assert result == {"resent": 1, "cleared": 0, "failed": 0, "queues_touched": 0}
    assert not _unsent(deployment, aws, job_id)


def test_parallel_submissions_with_repeated_keys_make_one_job_and_one_message_per_key(
    job_body: dict[str, Any], deployment: LocalResources, aws: Any
) -> None:
    # Given 5 distinct keys, each submitted 6 times by 10 concurrent "Lambda containers"
    # (threads, each with its own clients and idempotency layer, like separate containers)
    keys = [f"burst-{n}" for n in range(5)]
    submissions = [key for key in keys for _ in range(6)]
    runtimes = [idempotent_submit.build_runtime() for _ in range(10)]
    for runtime in runtimes:
        runtime.idempotency.register_lambda_context(FakeLambdaContext())
    request = SubmitJobRequest.model_validate(job_body)
    results: dict[str, list[str]] = defaultdict(list)
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(runtimes))

    def container(runtime: idempotent_submit.Runtime, mine: list[str]) -> None:
        start.wait()
        for key in mine:
            try:
                job_id = _submit_until_answered(runtime.submit, key, request)
            except BaseException as error:
                with lock:
                    errors.append(error)
                continue
            with lock:
                results[key].append(job_id)

    threads = [
        threading.Thread(target=container, args=(runtime, submissions[n :: len(runtimes)]))
        for n, runtime in enumerate(runtimes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # Then every submission was answered with its key's one job
    assert errors == []
    assert sorted(results) == keys
    for key, job_ids in results.items():
        assert job_ids == [derive_job_id("tenant-a", key)] * 6
    # And there is exactly one record and one message per key
    listed = aws("dynamodb").scan(
        TableName=deployment.names.jobs_table,
        FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues={":p": {"S": "JOB#"}},
    )["Items"]
    assert len(listed) == len(keys)
    messages = queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE])
    sent = sorted(JobMessage.model_validate_json(m["Body"]).job_id for m in messages)
    assert sent == sorted(derive_job_id("tenant-a", key) for key in keys)


def _submit_until_answered(
    submit: Callable[..., dict[str, Any]], key: str, request: SubmitJobRequest
) -> str:
    """A client's retry loop: an in-progress answer (409) means "retry shortly"."""
    deadline = time.monotonic() + 60
    while True:
        try:
            accepted = submit(
                command=idempotent_submit.SubmitCommand(
                    tenant="tenant-a",
                    idempotency_key=key,
                    correlation_id=f"c-{key}",
                    body=request.model_dump(mode="json"),
                )
            )
            return str(accepted["job_id"])
        except IdempotencyAlreadyInProgressError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
