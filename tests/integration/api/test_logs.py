"""Logs carry the correlation id on every line and never carry secrets or personal data."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.api.observability import SERVICE
from runtime.common.names import BucketRole
from runtime.local.resources import LocalResources
from tests.integration.api.conftest import Call, post_to_form, submit_body, wav_bytes
from tests.support.log_lines import captured_log_lines

WEBHOOK = "https://hooks.example.com/musetalk/callback?token=WEBHOOK-TOKEN-123"


@pytest.fixture
def api_log_lines() -> Iterator[io.StringIO]:
    """Every line the API logger writes, formatted exactly as in Lambda (JSON)."""
    with captured_log_lines(SERVICE) as sink:
        yield sink


def test_no_presigned_url_signature_webhook_or_api_key_in_any_log_line(
    call_api: Call,
    deployment: LocalResources,
    aws: Any,
    face_png: bytes,
    api_log_lines: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets: list[str] = [WEBHOOK, "WEBHOOK-TOKEN-123", "hooks.example.com", "key-a"]
    correlation = "corr-logs-1"
    headers = {"X-Correlation-Id": correlation}
    # Given a full flow: uploads (presigned POSTs), a job with a webhook, a finished job's link
    upload_ids = []
    for kind, data in [("audio", wav_bytes(seconds=1)), ("image", face_png)]:
        created = call_api("POST", "/v1/uploads", body={"kind": kind}, headers=headers)["json"]
        fields = created["upload"]["fields"]
        secrets += [created["upload"]["url"] + "?", fields["x-amz-signature"], fields["policy"]]
        post_to_form(created["upload"], data)
        upload_ids.append(created["upload_id"])
    body = submit_body(upload_ids[0], avatar_upload_id=upload_ids[1], webhook_url=WEBHOOK)
    accepted = call_api(
        "POST", "/v1/jobs", body=body, headers={**headers, "Idempotency-Key": "logs"}
    )["json"]
    rejected = call_api(
        "POST",
        "/v1/jobs",
        body={**body, "webhook_url": WEBHOOK.replace("https", "http")},
        headers={**headers, "Idempotency-Key": "logs-2"},
    )
    assert rejected["statusCode"] == 400
    outputs = deployment.buckets[BucketRole.OUTPUTS]
    key = f"tenants/tenant-a/jobs/{accepted['job_id']}/output.mp4"
    aws("s3").put_object(Bucket=outputs, Key=key, Body=b"x")
    aws("dynamodb").update_item(
        TableName=deployment.names.jobs_table,
        Key={"pk": {"S": f"JOB#{accepted['job_id']}"}},
        UpdateExpression="SET #s = :s, #o = :o",
        ExpressionAttributeNames={"#s": "status", "#o": "output"},
        ExpressionAttributeValues={
            ":s": {"S": "SUCCEEDED"},
            ":o": {"M": {"bucket": {"S": outputs}, "key": {"S": key}}},
        },
    )
    status = call_api("GET", f"/v1/jobs/{accepted['job_id']}", headers=headers)["json"]
    secrets += [status["output_url"], status["output_url"].split("Signature=")[-1][:40]]

    # Then every line our handlers logged has the correlation id and none of the secrets
    lines = api_log_lines.getvalue().splitlines()
    ours = [json.loads(line) for line in lines]
    assert len(ours) >= 5
    assert all(entry["correlation_id"] == correlation for entry in ours)
    others = [r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug")]
    everything = "\n".join(lines + others)
    leaked = [secret for secret in secrets if secret and secret in everything]
    assert leaked == []
