"""Boundary validation, tenant isolation and authentication: 4xx naming the field, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.api import idempotent_submit, jobs
from runtime.common.limits import LaneLimits, Limits
from runtime.common.names import EnvVar, Lane
from runtime.local.resources import LocalResources
from tests.integration.api.conftest import Call, Upload, queue_messages, submit_body, wav_bytes


@pytest.fixture
def job_inputs(upload: Upload, short_wav: bytes, face_png: bytes) -> dict[str, str]:
    return {"audio": upload("audio", short_wav), "face": upload("image", face_png)}


def _submit(call_api: Call, body: dict[str, Any], key: str = "k", **kwargs: Any) -> dict[str, Any]:
    return call_api("POST", "/v1/jobs", body=body, headers={"Idempotency-Key": key}, **kwargs)


# Each bad value and the field its 400 must name. Rejected before any lookup, so the ids need
# not exist; one test walks them all (a deployment per case cost more than the cases).
BAD_SUBMISSIONS: list[tuple[dict[str, Any], str]] = [
    ({"avatar_options": {"bbox_shift": 41}}, "avatar_options.bbox_shift"),
    ({"avatar_options": {"bbox_shift": -41}}, "avatar_options.bbox_shift"),
    ({"avatar_options": {"bbox_shift": "3"}}, "avatar_options.bbox_shift"),
    ({"avatar_options": {"bbox_shift": 2.5}}, "avatar_options.bbox_shift"),
    ({"lane": "fast"}, "lane"),
    ({"surprise": 1}, "surprise"),
    ({"options": {"skip_silence": True, "gpu": "a100"}}, "options.gpu"),
    ({"audio_upload_id": "../../tenant-b/uploads/x"}, "audio_upload_id"),
    ({"audio_upload_id": "s3://bucket/key"}, "audio_upload_id"),
    ({"avatar_upload_id": "https://evil.example/face.png"}, "avatar_upload_id"),
    ({"webhook_url": "http://hooks.example.com/done"}, "webhook_url"),
    ({"webhook_url": "https://169.254.169.254/latest/meta-data"}, "webhook_url"),
    ({"webhook_url": "https://127.1/x"}, "webhook_url"),
    ({"webhook_url": "https://10.0.0.7/x"}, "webhook_url"),
    ({"webhook_url": "https://[::1]/x"}, "webhook_url"),
    ({"webhook_url": "https://localhost/x"}, "webhook_url"),
    (
        {"webhook_url": "https://user:pw@hooks.example.com/x"},  # pragma: allowlist secret
        "webhook_url",
    ),
]


def test_bad_submissions_are_400_naming_the_field(call_api: Call) -> None:
    # Given each bad submission; When it is posted; Then it is a 400 naming its field
    wrong = []
    for change, field in BAD_SUBMISSIONS:
        body = {**submit_body("audio1", avatar_upload_id="face1"), **change}
        response = _submit(call_api, body)
        error = (response["json"] or {}).get("error") or {}
        answer = (response["statusCode"], error.get("code"), error.get("field"))
        if answer != (400, "INVALID_REQUEST", field):
            wrong.append((change, answer))
    assert wrong == []


def test_exactly_one_avatar_reference_is_required(
    call_api: Call, job_inputs: dict[str, str]
) -> None:
    neither = _submit(call_api, submit_body(job_inputs["audio"]))
    both = _submit(
        call_api,
        submit_body(job_inputs["audio"], avatar_id="av_x", avatar_upload_id=job_inputs["face"]),
    )
    assert neither["json"]["error"]["field"] == both["json"]["error"]["field"] == "avatar_id"


def test_missing_or_malformed_idempotency_key_is_rejected(
    call_api: Call, job_inputs: dict[str, str]
) -> None:
    body = submit_body(job_inputs["audio"], avatar_upload_id=job_inputs["face"])
    missing = call_api("POST", "/v1/jobs", body=body)
    spaces = _submit(call_api, body, key="has spaces")
    assert missing["statusCode"] == spaces["statusCode"] == 400
    assert (
        missing["json"]["error"]["field"] == spaces["json"]["error"]["field"] == "Idempotency-Key"
    )


def test_a_public_https_webhook_is_accepted_and_kept_out_of_the_message(
    call_api: Call, job_inputs: dict[str, str], deployment: LocalResources, aws: Any
) -> None:
    body = submit_body(
        job_inputs["audio"],
        avatar_upload_id=job_inputs["face"],
        webhook_url="https://hooks.example.com/musetalk?token=s3cr3t",
    )
    assert _submit(call_api, body)["statusCode"] == 202
    (message,) = queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE])
    assert "s3cr3t" not in message["Body"]
    assert json.loads(message["Body"])["has_webhook"] is True


def test_an_oversized_body_is_413_before_any_route_runs(call_api: Call) -> None:
    response = call_api(
        "POST",
        "/v1/jobs",
        raw_body=json.dumps({"pad": "x" * 70_000}),
        headers={"Idempotency-Key": "k"},
    )
    assert response["statusCode"] == 413
    assert response["json"]["error"] == {
        "code": "BODY_TOO_LARGE",
        "message": "request body exceeds 65536 bytes",
        "field": "body",
    }


def test_invalid_json_is_400_on_body(call_api: Call) -> None:
    response = call_api("POST", "/v1/uploads", raw_body="{not json")
    assert (response["statusCode"], response["json"]["error"]["field"]) == (400, "body")


def test_audio_longer_than_the_lane_allows_is_refused_before_queueing(
    call_api: Call, upload: Upload, job_inputs: dict[str, str], deployment: LocalResources, aws: Any
) -> None:
    # Given a 61 s WAV: over the interactive lane's 60 s, within batch's 600 s
    long_audio = upload("audio", wav_bytes(seconds=61))
    body = submit_body(long_audio, avatar_upload_id=job_inputs["face"])
    interactive = _submit(call_api, body, key="long-i")
    batch = _submit(call_api, {**body, "lane": "batch"}, key="long-b")
    assert interactive["statusCode"] == 422
    assert interactive["json"]["error"]["code"] == "AUDIO_TOO_LONG"
    assert interactive["json"]["error"]["field"] == "audio_upload_id"
    assert batch["statusCode"] == 202
    assert queue_messages(aws("sqs"), deployment.queue_urls[Lane.INTERACTIVE]) == []


def test_file_sizes_are_checked_against_the_lane_limits(
    call_api: Call,
    upload: Upload,
    deployment: LocalResources,
    monkeypatch: pytest.MonkeyPatch,
    face_png: bytes,
) -> None:
    # Given an interactive lane that takes at most 1 KB of audio and 1 KB images
    tight = LaneLimits(
        max_audio_seconds=60, max_audio_bytes=1024, max_video_bytes=1024, max_image_bytes=1024
    )
    limits = Limits(
        lanes={Lane.INTERACTIVE: tight, Lane.BATCH: deployment.config.limits.lanes[Lane.BATCH]}
    )
    monkeypatch.setenv(EnvVar.LIMITS_JSON.value, limits.model_dump_json())
    idempotent_submit.runtime.cache_clear()
    audio = upload("audio", wav_bytes(seconds=0.5))  # 4 KB
    small_audio = upload("audio", wav_bytes(seconds=0.1))
    face = upload("image", face_png)  # 256 KB
    # When jobs reference them on the interactive lane
    big_audio = _submit(call_api, submit_body(audio, avatar_upload_id=face), key="a")
    big_face = _submit(call_api, submit_body(small_audio, avatar_upload_id=face), key="b")
    # Then each is refused, naming what is too large
    assert (big_audio["statusCode"], big_audio["json"]["error"]["code"]) == (413, "MEDIA_TOO_LARGE")
    assert big_audio["json"]["error"]["field"] == "audio_upload_id"
    assert big_face["statusCode"] == 413
    assert big_face["json"]["error"]["field"] == "avatar_id"


def test_an_upload_that_never_arrived_cannot_be_used(
    call_api: Call, job_inputs: dict[str, str]
) -> None:
    pending = call_api("POST", "/v1/uploads", body={"kind": "audio"})["json"]["upload_id"]
    response = _submit(call_api, submit_body(pending, avatar_upload_id=job_inputs["face"]))
    assert response["statusCode"] == 409
    assert response["json"]["error"]["code"] == "UPLOAD_NOT_RECEIVED"


def test_another_tenants_objects_do_not_exist_for_you(
    call_api: Call, upload: Upload, job_inputs: dict[str, str], short_wav: bytes
) -> None:
    # Given tenant A's job and avatar
    body = submit_body(job_inputs["audio"], avatar_upload_id=job_inputs["face"])
    job_id = _submit(call_api, body)["json"]["job_id"]
    avatar_id = call_api("POST", "/v1/avatars", body={"upload_id": job_inputs["face"]})["json"][
        "avatar_id"
    ]
    # When tenant B reads, cancels or references them
    as_b = {"api_key_id": "key-b"}
    b_audio = upload("audio", short_wav, api_key_id="key-b")
    reads = [
        call_api("GET", f"/v1/jobs/{job_id}", **as_b),
        call_api("DELETE", f"/v1/jobs/{job_id}", query={"purge": "true"}, **as_b),
        call_api("GET", f"/v1/avatars/{avatar_id}", **as_b),
        _submit(call_api, submit_body(b_audio, avatar_id=avatar_id), key="b1", **as_b),
        _submit(
            call_api, submit_body(b_audio, avatar_upload_id=job_inputs["face"]), key="b2", **as_b
        ),
        _submit(
            call_api,
            submit_body(job_inputs["audio"], avatar_upload_id=job_inputs["face"]),
            key="b3",
            **as_b,
        ),
        call_api("POST", "/v1/avatars", body={"upload_id": job_inputs["face"]}, **as_b),
    ]
    # Then everything is 404, exactly as if it did not exist
    assert [r["statusCode"] for r in reads] == [404] * len(reads)
    assert all(r["json"]["error"]["code"] == "NOT_FOUND" for r in reads)
    assert call_api("GET", "/v1/jobs", **as_b)["json"]["jobs"] == []
    assert call_api("GET", "/v1/avatars", **as_b)["json"]["avatars"] == []
    # And tenant A's job is untouched
    assert call_api("GET", f"/v1/jobs/{job_id}")["json"]["status"] == "QUEUED"


def test_a_page_token_cannot_be_pointed_at_another_tenant(call_api: Call) -> None:
    import base64

    forged_key = {"pk": "JOB#x", "tenant_kind": "tenant-b#job", "created_at": "2030-01-01"}
    forged = base64.urlsafe_b64encode(json.dumps(forged_key).encode()).decode()
    for token in [forged, "garbage!!", "e30"]:
        response = call_api("GET", "/v1/jobs", query={"next_token": token})
        assert (response["statusCode"], response["json"]["error"]["field"]) == (400, "next_token")


@pytest.mark.parametrize(
    ("api_key_id", "status", "code"),
    [(None, 401, "UNAUTHENTICATED"), ("", 401, "UNAUTHENTICATED"), ("key-z", 403, "FORBIDDEN")],
)
def test_callers_without_a_known_api_key_are_refused(
    call_api: Call, api_key_id: str | None, status: int, code: str
) -> None:
    response = call_api("GET", "/v1/jobs", api_key_id=api_key_id)
    assert (response["statusCode"], response["json"]["error"]["code"]) == (status, code)


def test_unknown_routes_and_ids_are_404_with_the_error_shape(call_api: Call) -> None:
    for method, path in [
        ("GET", "/v1/nope"),
        ("PUT", "/v1/jobs"),
        ("GET", "/v1/jobs/job_doesnotexist"),
        ("GET", "/v2/jobs"),
    ]:
        response = call_api(method, path)
        assert response["statusCode"] == 404, (method, path)
        assert set(response["json"]["error"]) >= {"code", "message"}


def test_the_openapi_document_is_served(call_api: Call) -> None:
    response = call_api("GET", "/v1/openapi.json", api_key_id=None)
    assert response["statusCode"] == 200
    assert "/v1/jobs" in response["json"]["paths"]


def test_a_malformed_correlation_id_is_replaced_not_echoed(call_api: Call) -> None:
    response = call_api("GET", "/v1/jobs", headers={"X-Correlation-Id": "bad value\r\nInjected: 1"})
    returned = response["headers"]["X-Correlation-Id"]
    assert "Injected" not in returned
    assert len(returned) == 36  # a fresh UUID


def test_header_names_are_case_insensitive(call_api: Call, job_inputs: dict[str, str]) -> None:
    body = submit_body(job_inputs["audio"], avatar_upload_id=job_inputs["face"])
    response = call_api(
        "POST",
        "/v1/jobs",
        body=body,
        headers={"idempotency-key": "lower", "x-correlation-id": "lower-corr"},
    )
    assert response["statusCode"] == 202
    assert response["headers"]["X-Correlation-Id"] == "lower-corr"


def test_submissions_are_counted_as_accepted_per_lane_or_rejected(
    call_api: Call, job_inputs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    body = submit_body(job_inputs["audio"], avatar_upload_id=job_inputs["face"])
    capsys.readouterr()
    _submit(call_api, body, key="counted")
    _submit(call_api, {**body, "lane": "nope"}, key="rejected")
    emf = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    accepted = [doc for doc in emf if "JobsAccepted" in doc]
    rejected = [doc for doc in emf if "JobsRejected" in doc]
    assert [(doc["Lane"], doc["Service"]) for doc in accepted] == [("interactive", "api")]
    assert [doc["Service"] for doc in rejected] == ["api"]
    assert all(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MuseTalk" for doc in emf)


def test_a_bug_is_a_500_with_the_error_shape_and_no_stack_trace(
    call_api: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals /var/task/runtime/api/jobs.py")

    monkeypatch.setattr(jobs, "get_job", broken)
    response = call_api("GET", "/v1/jobs/job_x")
    assert response["statusCode"] == 500
    assert response["json"]["error"]["code"] == "INTERNAL"
    assert "internals" not in response["body"]
    assert "Traceback" not in response["body"]
