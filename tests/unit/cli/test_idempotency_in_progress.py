"""Regression (found by the chaos flood): a submit answered 409 IDEMPOTENCY_IN_PROGRESS, because a
parallel request with the same key is still being processed, is retried after Retry-After and gets
the job; the API documents this code as "retry"."""

from __future__ import annotations

import httpx
import pytest

from runtime.cli.client import ApiClient
from runtime.cli.errors import CliError
from runtime.common.jobs import RenderOptions
from runtime.common.names import Lane

IN_PROGRESS = {"error": {"code": "IDEMPOTENCY_IN_PROGRESS", "message": "retry"}}
REUSED = {"error": {"code": "IDEMPOTENCY_KEY_REUSED", "message": "other body", "field": "x"}}


def _client(answers: list[httpx.Response], seen: list[httpx.Request]) -> ApiClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return ApiClient("https://api.test/prod", "key", transport=httpx.MockTransport(handle))


def _submit(client: ApiClient) -> dict[str, object]:
    return client.create_job(
        avatar_id="av-1",
        audio_upload_id="up-1",
        lane=Lane.INTERACTIVE,
        options=RenderOptions(),
        idempotency_key="same-key",
    )


def test_a_submit_still_in_progress_elsewhere_is_retried_with_the_same_key() -> None:
    # Given the API answers the first submit "in progress" and the second with the job
    seen: list[httpx.Request] = []
    answers = [
        httpx.Response(409, headers={"Retry-After": "0"}, json=IN_PROGRESS),
        httpx.Response(202, json={"job_id": "job-1", "status": "QUEUED"}),
    ]

    # When the client submits
    with _client(answers, seen) as client:
        answer = _submit(client)

    # Then it retried once with the same key and returned the job
    assert answer["job_id"] == "job-1"
    assert [r.headers["Idempotency-Key"] for r in seen] == ["same-key", "same-key"]


def test_a_key_reused_with_another_body_is_not_retried() -> None:
    # Given the API answers 409 IDEMPOTENCY_KEY_REUSED
    seen: list[httpx.Request] = []
    answers = [httpx.Response(409, json=REUSED)]

    # When the client submits, Then the conflict is reported at once
    with _client(answers, seen) as client, pytest.raises(CliError) as failure:
        _submit(client)
    assert failure.value.code == "IDEMPOTENCY_KEY_REUSED"
    assert len(seen) == 1
