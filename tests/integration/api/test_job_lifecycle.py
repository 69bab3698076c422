"""Uploads, avatars and jobs end to end through API Gateway events against a moto server."""

from __future__ import annotations

import base64
import functools
import json
from decimal import Decimal
from typing import Any

import boto3
import httpx

from runtime.common.jobs import MODEL_VERSION, JobMessage, JobStatus
from runtime.common.keys import avatar_cache_key, rendered_cache_key
from runtime.common.names import BucketRole, Lane
from runtime.common.records import JobRecord
from runtime.local.resources import LocalResources
from tests.integration.api.conftest import (
    Call,
    Submit,
    Upload,
    post_to_form,
    queue_messages,
    submit_body,
)


@functools.cache
def _dynamodb(endpoint: str) -> Any:
    return boto3.resource("dynamodb", endpoint_url=endpoint)


def _table(deployment: LocalResources) -> Any:
    return _dynamodb(deployment.endpoint_url).Table(deployment.names.jobs_table)


def test_presigned_post_stores_the_file_under_the_tenant_prefix(
    call_api: Call, deployment: LocalResources, aws: Any, short_wav: bytes
) -> None:
    # Given an audio upload created through the API
    created = call_api("POST", "/v1/uploads", body={"kind": "audio"})
    assert created["statusCode"] == 201
    form = created["json"]["upload"]
    key = form["fields"]["key"]
    # Then the form pins the key in the tenant prefix, the content type and a byte range
    assert key == f"tenants/tenant-a/uploads/{created['json']['upload_id']}/audio"
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    assert {"Content-Type": "audio/wav"} in policy["conditions"]
    assert ["content-length-range", 1, created["json"]["max_bytes"]] in policy["conditions"]
    assert {"key": key} in policy["conditions"]
    # When the client POSTs the file to the form
    response = post_to_form(form, short_wav)
    # Then S3 has it, with the pinned content type
    assert response.status_code in (200, 201, 204)
    head = aws("s3").head_object(Bucket=deployment.buckets[BucketRole.UPLOADS], Key=key)
    assert head["ContentLength"] == len(short_wav)
    assert head["ContentType"] == "audio/wav"


def test_a_kind_rejects_content_types_of_another_kind(call_api: Call) -> None:
    response = call_api("POST", "/v1/uploads", body={"kind": "audio", "content_type": "image/png"})
    assert response["statusCode"] == 400
    assert response["json"]["error"]["field"] == "content_type"


def test_the_same_face_twice_is_one_avatar(call_api: Call, upload: Upload, face_png: bytes) -> None:
    # Given the same image uploaded twice
    first_upload = upload("image", face_png)
    second_upload = upload("image", face_png)
    # When both are registered with the same options
    first = call_api("POST", "/v1/avatars", body={"upload_id": first_upload})
    second = call_api("POST", "/v1/avatars", body={"upload_id": second_upload})
    other_options = call_api(
        "POST", "/v1/avatars", body={"upload_id": second_upload, "options": {"bbox_shift": 5}}
    )
    # Then they are one avatar (created once, then found), pointing at the newest upload
    assert first["statusCode"] == 201
    assert second["statusCode"] == 200
    assert first["json"]["avatar_id"] == second["json"]["avatar_id"]
    assert second["json"]["upload_id"] == second_upload
    # And other options are another avatar
    assert other_options["statusCode"] == 201
    assert other_options["json"]["avatar_id"] != first["json"]["avatar_id"]
    listed = call_api("GET", "/v1/avatars")
    assert {a["avatar_id"] for a in listed["json"]["avatars"]} == {
        first["json"]["avatar_id"],
        other_options["json"]["avatar_id"],
    }


def test_an_avatar_needs_a_received_video_or_image(call_api: Call, upload: Upload) -> None:
    audio = upload("audio", b"RIFF0000WAVE")
    not_sent = call_api("POST", "/v1/uploads", body={"kind": "video"})["json"]["upload_id"]
    wrong_kind = call_api("POST", "/v1/avatars", body={"upload_id": audio})
    missing_file = call_api("POST", "/v1/avatars", body={"upload_id": not_sent})
    assert (wrong_kind["statusCode"], wrong_kind["json"]["error"]["field"]) == (400, "upload_id")
    assert missing_file["statusCode"] == 409
    assert missing_file["json"]["error"]["code"] == "UPLOAD_NOT_RECEIVED"


def test_submitted_job_is_recorded_then_queued_with_the_callers_correlation_id(
    call_api: Call, submit_job: Submit, deployment: LocalResources, aws: Any
) -> None:
    # Given an audio upload and an avatar upload
    # When a job is submitted with a correlation id
    response = submit_job(
        "order-1", headers={"X-Correlation-Id": "corr-123"}, avatar_options={"bbox_shift": -3}
    )
    # Then it is accepted, with where to look
    assert response["statusCode"] == 202, response["json"]
    job_id = response["json"]["job_id"]
    assert response["json"]["status_url"] == f"/v1/jobs/{job_id}"
    assert response["headers"]["X-Correlation-Id"] == "corr-123"
    # And exactly one message is on the interactive queue, carrying the correlation id
    messages = queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE])
    assert len(messages) == 1
    message = JobMessage.model_validate_json(messages[0]["Body"])
    assert message.job_id == job_id
    assert message.correlation_id == "corr-123"
    assert message.avatar_options.bbox_shift == -3
    assert message.audio.key.startswith("tenants/tenant-a/uploads/")
    assert messages[0]["MessageAttributes"]["correlation_id"]["StringValue"] == "corr-123"
    assert queue_messages(aws("sqs"), deployment.queue_urls[Lane.BATCH]) == []
    # And the record is QUEUED with its send confirmed (off the unsent index)
    item = _table(deployment).get_item(Key={"pk": f"JOB#{job_id}"})["Item"]
    assert item["status"] == "QUEUED"
    assert "unsent_lane" not in item
    # And the status endpoint shows it
    status = call_api("GET", f"/v1/jobs/{job_id}")
    assert status["statusCode"] == 200
    assert status["json"]["status"] == "QUEUED"
    assert status["json"]["output_url"] is None


def test_same_key_same_body_is_the_same_job_and_another_body_is_a_409(
    call_api: Call, job_body: dict[str, Any], deployment: LocalResources, aws: Any
) -> None:
    body = job_body
    headers = {"Idempotency-Key": "same-key"}
    first = call_api("POST", "/v1/jobs", body=body, headers=headers)
    # Same body, keys reordered: the same request
    again = call_api("POST", "/v1/jobs", body=dict(reversed(list(body.items()))), headers=headers)
    other = call_api("POST", "/v1/jobs", body={**body, "lane": "batch"}, headers=headers)
    assert first["statusCode"] == again["statusCode"] == 202
    assert first["json"]["job_id"] == again["json"]["job_id"]
    assert other["statusCode"] == 409
    assert other["json"]["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert other["json"]["error"]["field"] == "Idempotency-Key"
    assert len(queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE])) == 1
    assert queue_messages(aws("sqs"), deployment.queue_urls[Lane.BATCH]) == []


def test_the_idempotency_guarantee_outlives_the_idempotency_record(
    submit_job: Submit, deployment: LocalResources, aws: Any
) -> None:
    # Given a job accepted under a key, and the powertools idempotency records expired (gone)
    first = submit_job("k")
    idempotency = _dynamodb(deployment.endpoint_url).Table(deployment.names.idempotency_table)
    for item in idempotency.scan()["Items"]:
        idempotency.delete_item(Key={"id": item["id"]})
    # When the key is used again, with the same and with another body
    again = submit_job("k")
    other = submit_job("k", lane="batch")
    # Then the job record itself still decides: same job, and a 409 for the other body
    assert again["json"]["job_id"] == first["json"]["job_id"]
    assert other["statusCode"] == 409
    assert len(queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE])) == 1


def test_jobs_list_newest_first_with_opaque_pages_and_status_filter(
    call_api: Call, upload: Upload, deployment: LocalResources, short_wav: bytes, face_png: bytes
) -> None:
    audio = upload("audio", short_wav)
    avatar = call_api("POST", "/v1/avatars", body={"upload_id": upload("image", face_png)})
    avatar_id = avatar["json"]["avatar_id"]
    submitted = [
        call_api(
            "POST",
            "/v1/jobs",
            body=submit_body(audio, avatar_id=avatar_id),
            headers={"Idempotency-Key": f"list-{n}"},
        )["json"]["job_id"]
        for n in range(5)
    ]
    # Cancel one, so a status filter has something to separate
    assert call_api("DELETE", f"/v1/jobs/{submitted[0]}")["statusCode"] == 200

    seen: list[str] = []
    token = None
    while True:
        query = {"limit": "2", **({"next_token": token} if token else {})}
        page = call_api("GET", "/v1/jobs", query=query)
        assert page["statusCode"] == 200
        assert len(page["json"]["jobs"]) <= 2
        seen += [job["job_id"] for job in page["json"]["jobs"]]
        token = page["json"]["next_token"]
        if not token:
            break
    assert seen == list(reversed(submitted))
    cancelled = call_api("GET", "/v1/jobs", query={"status": "CANCELLED"})
    assert [job["job_id"] for job in cancelled["json"]["jobs"]] == [submitted[0]]
    bad = call_api("GET", "/v1/jobs", query={"status": "DONE"})
    assert (bad["statusCode"], bad["json"]["error"]["field"]) == (400, "status")


def test_a_finished_job_links_its_output_with_a_working_short_lived_url(
    call_api: Call, submit_job: Submit, deployment: LocalResources, aws: Any
) -> None:
    # Given a job the worker finished (output written, record SUCCEEDED with timings)
    job_id = submit_job("done")["json"]["job_id"]
    output_key = f"tenants/tenant-a/jobs/{job_id}/output.mp4"
    outputs = deployment.buckets[BucketRole.OUTPUTS]
    aws("s3").put_object(Bucket=outputs, Key=output_key, Body=b"fake-mp4-bytes")
    _table(deployment).update_item(
        Key={"pk": f"JOB#{job_id}"},
        UpdateExpression=(
            "SET #s = :s, #o = :o, progress = :p, timings = :t, sync_confidence = :c, weights = :w"
        ),
        ExpressionAttributeNames={"#s": "status", "#o": "output"},
        ExpressionAttributeValues={
            ":s": "SUCCEEDED",
            ":o": {"bucket": outputs, "key": output_key},
            ":p": Decimal(1),
            ":t": {"queue_wait_ms": Decimal("12.5"), "speak_ms": Decimal(900)},
            ":c": Decimal("0.71"),
            ":w": "official",
        },
    )
    # When its status is read
    status = call_api("GET", f"/v1/jobs/{job_id}")["json"]
    # Then it has timings, the sync score and a download link that works
    assert status["status"] == "SUCCEEDED"
    assert status["timings"]["queue_wait_ms"] == 12.5
    assert status["sync_confidence"] == 0.71
    assert status["weights"] == "official"
    download = httpx.get(status["output_url"], timeout=30)
    assert download.status_code == 200
    assert download.content == b"fake-mp4-bytes"
    # And it can no longer be cancelled
    refused = call_api("DELETE", f"/v1/jobs/{job_id}")
    assert refused["statusCode"] == 409
    assert refused["json"]["error"]["code"] == "JOB_ALREADY_FINAL"


def test_cancel_is_conditional_and_purge_erases_inputs_and_outputs(
    call_api: Call,
    job_body: dict[str, Any],
    submit_job: Submit,
    deployment: LocalResources,
    aws: Any,
) -> None:
    audio = job_body["audio_upload_id"]
    job_id = submit_job("purge-me")["json"]["job_id"]
    record = JobRecord.from_item(_table(deployment).get_item(Key={"pk": f"JOB#{job_id}"})["Item"])
    s3 = aws("s3")
    s3.put_object(
        Bucket=deployment.buckets[BucketRole.OUTPUTS],
        Key=f"tenants/tenant-a/jobs/{job_id}/output.mp4",
        Body=b"partial",
    )
    cache = deployment.buckets[BucketRole.AVATAR_CACHE]
    prepared = avatar_cache_key(MODEL_VERSION, record.avatar_id)
    # (prepared by this release and by an earlier model version, beside another avatar's)
    earlier = avatar_cache_key("musetalk-v1.0", record.avatar_id)
    others = [
        avatar_cache_key(version, "someone-else") for version in (MODEL_VERSION, "musetalk-v1.0")
    ]
    for key in (prepared, earlier, *others):
        s3.put_object(Bucket=cache, Key=key, Body=b"latents")
    # (and the content-addressed render it came from, as the worker records it on success)
    rendered = rendered_cache_key(MODEL_VERSION, "c" * 64)
    s3.put_object(Bucket=deployment.buckets[BucketRole.OUTPUTS], Key=rendered, Body=b"video")
    _table(deployment).update_item(
        Key={"pk": f"JOB#{job_id}"},
        UpdateExpression="SET output_cache_key = :key",
        ExpressionAttributeValues={":key": rendered},
    )
    # When it is cancelled, twice
    first = call_api("DELETE", f"/v1/jobs/{job_id}")
    second = call_api("DELETE", f"/v1/jobs/{job_id}")
    # Then it is CANCELLED (and cancelling again is harmless)
    assert first["json"] == {"job_id": job_id, "status": "CANCELLED", "purged": False}
    assert second["statusCode"] == 200
    assert s3.head_object(Bucket=record.audio.bucket, Key=record.audio.key)["ContentLength"] > 0
    # When it is purged
    purged = call_api("DELETE", f"/v1/jobs/{job_id}", query={"purge": "true"})
    assert purged["json"]["purged"] is True
    # Then its audio, its avatar's source, the prepared avatar and its output are gone, and so
    # are the records pointing at them
    for bucket, key in [
        (record.audio.bucket, record.audio.key),
        (record.avatar.bucket, record.avatar.key),
        (deployment.buckets[BucketRole.OUTPUTS], f"tenants/tenant-a/jobs/{job_id}/output.mp4"),
        (cache, prepared),
        (cache, earlier),
        (deployment.buckets[BucketRole.OUTPUTS], rendered),
    ]:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key)
        assert listed.get("KeyCount", 0) == 0, key
    # while other avatars' prepared data stays, under every version
    for key in others:
        assert s3.head_object(Bucket=cache, Key=key)["ContentLength"] > 0
    reuse = call_api(
        "POST",
        "/v1/jobs",
        body=submit_body(audio, avatar_id=record.avatar_id),
        headers={"Idempotency-Key": "after-purge"},
    )
    assert reuse["statusCode"] == 404
    assert call_api("GET", f"/v1/jobs/{job_id}")["json"]["status"] == JobStatus.CANCELLED
