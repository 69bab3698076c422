"""The musetalk commands against a fake API: what they send, print and exit with."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest

from runtime.cli.errors import ExitCode
from runtime.cli.main import main
from tests.unit.cli.fake_api import API_URL, DOWNLOAD_URL, MP4_BYTES, FakeApi

CONNECTION = ["--api-url", API_URL, "--api-key", "key-123"]


def run(api: FakeApi, *args: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main([*CONNECTION, *args], stdout=stdout, stderr=stderr, transport=api.transport())
    return code, stdout.getvalue(), stderr.getvalue()


def test_submit_with_a_video_file_uploads_registers_and_creates_the_job(
    fake_api: FakeApi, media: dict[str, Path]
) -> None:
    # Given an avatar video and an audio file
    # When the user submits them on the batch lane with an avatar option
    code, out, _ = run(
        fake_api,
        "submit",
        str(media["video"]),
        str(media["audio"]),
        "--lane",
        "batch",
        "--bbox-shift",
        "-5",
        "--mask-blur",
        "realtime",
        "--idempotency-key",
        "retry-safe-1",
    )

    # Then both files go through presigned POSTs and the job references the registered avatar
    assert code == ExitCode.OK
    assert out.strip() == "job-1"
    assert list(fake_api.api_requests()) == [
        ("POST", "/v1/uploads"),
        ("POST", "/v1/avatars"),
        ("POST", "/v1/uploads"),
        ("POST", "/v1/jobs"),
    ]
    uploads = [json.loads(r.content) for r in fake_api.requests if r.url.path.endswith("uploads")]
    assert [u["kind"] for u in uploads] == ["video", "audio"]
    assert uploads[0] == {"kind": "video", "content_type": "video/mp4"}
    assert len(fake_api.uploads) == 2
    assert media["video"].read_bytes() in fake_api.uploads[0]["body"]
    avatar = json.loads(_request(fake_api, "POST", "/v1/avatars").content)
    assert avatar["options"]["bbox_shift"] == -5
    assert avatar["options"]["mask_blur"] == "realtime"
    job_request = _request(fake_api, "POST", "/v1/jobs")
    assert job_request.headers["Idempotency-Key"] == "retry-safe-1"
    assert job_request.headers["x-api-key"] == "key-123"
    assert json.loads(job_request.content) == {
        "avatar_id": "av-1",
        "audio_upload_id": "up-audio-1",
        "lane": "batch",
        "options": {"skip_silence": True, "sync_threshold": 0.3},
    }
    # And the storage uploads never carry the API key
    assert all("x-api-key" not in upload["headers"] for upload in fake_api.uploads)


def test_submit_with_an_avatar_id_skips_the_avatar_upload(
    fake_api: FakeApi, media: dict[str, Path]
) -> None:
    code, _, _ = run(fake_api, "submit", "av-existing", str(media["audio"]))

    assert code == ExitCode.OK
    assert ("POST", "/v1/avatars") not in list(fake_api.api_requests())
    assert json.loads(_request(fake_api, "POST", "/v1/jobs").content)["avatar_id"] == "av-existing"


def test_submit_wait_follows_the_job_and_downloads_the_mp4(
    fake_api: FakeApi, media: dict[str, Path], tmp_path: Path
) -> None:
    # When the user submits with --wait and --download into a directory
    code, out, err = run(
        fake_api,
        "submit",
        str(media["image"]),
        str(media["audio"]),
        "--wait",
        "--download",
        str(tmp_path / "out"),
        "--poll-seconds",
        "0",
    )

    # Then the job is polled to SUCCEEDED, the mp4 saved, and the summary printed
    assert code == ExitCode.OK
    saved = tmp_path / "out" / "job-1.mp4"
    assert saved.read_bytes() == MP4_BYTES
    assert "SUCCEEDED" in out
    assert f"saved     {saved}" in out
    assert "prepare 1.2 s" in out
    # And the progress lines (stderr, not a terminal) show each status once
    assert [line.split()[-1] for line in err.splitlines() if "[" in line] == [
        "QUEUED",
        "RENDERING",
        "SUCCEEDED",
    ]
    # And the presigned URL never reaches the human output
    assert DOWNLOAD_URL not in out + err


def test_wait_on_a_failed_job_exits_1_with_the_error(fake_api: FakeApi) -> None:
    fake_api.statuses = ["RENDERING", "FAILED"]

    code, out, _ = run(fake_api, "wait", "job-1", "--poll-seconds", "0")

    assert code == ExitCode.JOB_FAILED
    assert "NO_FACE: no face in the avatar" in out


def test_wait_gives_up_at_the_timeout_with_exit_9(fake_api: FakeApi) -> None:
    fake_api.statuses = ["RENDERING"]

    code, _, err = run(fake_api, "wait", "job-1", "--timeout", "0", "--poll-seconds", "0")

    assert code == ExitCode.TIMEOUT
    assert "musetalk wait job-1" in err


def test_download_of_an_unfinished_job_is_a_conflict(fake_api: FakeApi, tmp_path: Path) -> None:
    fake_api.statuses = ["RENDERING"]

    code, _, err = run(fake_api, "download", "job-1", "-o", str(tmp_path / "x.mp4"))

    assert code == ExitCode.CONFLICT
    assert "nothing to download yet" in err
    assert not (tmp_path / "x.mp4").exists()


def test_json_mode_prints_exactly_one_parseable_document(fake_api: FakeApi) -> None:
    fake_api.statuses = ["SUCCEEDED"]

    code, out, err = run(fake_api, "status", "job-1", "--json")

    assert code == ExitCode.OK
    assert json.loads(out)["status"] == "SUCCEEDED"
    assert err == ""


@pytest.mark.parametrize(
    ("status_code", "body", "exit_code", "field"),
    [
        (422, {"error": {"code": "INVALID", "message": "bad lane", "field": "lane"}}, 3, "lane"),
        (413, {"error": {"code": "TOO_LARGE", "message": "too big"}}, 3, None),
        (404, {"error": {"code": "NOT_FOUND", "message": "no such job"}}, 4, None),
        (403, {"message": "Forbidden"}, 5, None),
        (409, {"error": {"code": "IDEMPOTENCY_MISMATCH", "message": "other body"}}, 6, None),
        (429, {"message": "Too Many Requests"}, 7, None),
        (500, {"message": "Internal server error"}, 8, None),
        (503, {"error": {"code": "DEPENDENCY_UNAVAILABLE", "message": "retry"}}, 8, None),
    ],
)
def test_api_errors_map_to_documented_exit_codes_naming_the_field(
    fake_api: FakeApi,
    status_code: int,
    body: dict[str, object],
    exit_code: int,
    field: str | None,
) -> None:
    # Given the API answers the status request with an error
    fake_api.failures[("GET", "/v1/jobs/job-1")] = (status_code, body)

    # When the user asks for the job, in human and in JSON mode
    human_code, _, err = run(fake_api, "status", "job-1")
    json_code, out, _ = run(fake_api, "--json", "status", "job-1")

    # Then both exit with the documented code, and the message names the field at fault
    assert human_code == json_code == exit_code
    retried = status_code in {429, 503}
    assert len(fake_api.requests) == (2 * 3 if retried else 2)
    error = json.loads(out)["error"]
    assert error["exit_code"] == exit_code
    assert error["status_code"] == status_code
    assert error.get("field") == field
    if field:
        assert f"(field: {field})" in err


def test_unreachable_api_is_a_service_error() -> None:
    stderr = io.StringIO()
    code = main(
        ["--api-url", "http://127.0.0.1:9", "--api-key", "k", "status", "job-1"], stderr=stderr
    )
    assert code == ExitCode.SERVICE
    assert "cannot reach the API" in stderr.getvalue()


def test_invalid_options_fail_before_any_request_naming_the_flag(
    fake_api: FakeApi, media: dict[str, Path]
) -> None:
    code, out, _ = run(
        fake_api, "--json", "submit", str(media["video"]), str(media["audio"]), "--bbox-shift", "99"
    )

    assert code == ExitCode.USAGE
    error = json.loads(out)["error"]
    assert error["field"] == "bbox_shift"
    assert "--bbox-shift" in error["message"]
    assert fake_api.requests == []


def test_avatar_options_with_an_avatar_id_are_refused(
    fake_api: FakeApi, media: dict[str, Path]
) -> None:
    code, _, err = run(fake_api, "submit", "av-1", str(media["audio"]), "--fps", "30")

    assert code == ExitCode.USAGE
    assert "--fps" in err
    assert fake_api.requests == []


def test_a_missing_media_file_is_a_usage_error(fake_api: FakeApi, tmp_path: Path) -> None:
    code, _, err = run(fake_api, "submit", str(tmp_path / "face.mp4"), str(tmp_path / "a.wav"))

    assert code == ExitCode.USAGE
    assert "no such file" in err


def test_purge_needs_confirmation_and_then_deletes_with_purge(fake_api: FakeApi) -> None:
    unconfirmed, _, err = run(fake_api, "purge", "job-1")
    assert unconfirmed == ExitCode.USAGE
    assert "--yes" in err
    assert fake_api.requests == []

    confirmed, _, _ = run(fake_api, "purge", "job-1", "--yes")
    assert confirmed == ExitCode.OK
    (request,) = fake_api.requests
    assert request.method == "DELETE"
    assert request.url.params["purge"] == "true"


def test_cancel_passes_the_callers_reason(fake_api: FakeApi) -> None:
    code, _, _ = run(fake_api, "cancel", "job-1", "--reason", "wrong avatar")
    assert code == ExitCode.OK
    (request,) = fake_api.requests
    assert request.method == "DELETE"
    assert request.url.params["reason"] == "wrong avatar"


def test_unsafe_job_ids_never_reach_the_url(fake_api: FakeApi) -> None:
    code, _, _ = run(fake_api, "status", "../avatars")

    assert code == ExitCode.USAGE
    assert fake_api.requests == []


def test_bad_arguments_exit_2(fake_api: FakeApi) -> None:
    code, _, _ = run(fake_api, "submit", "a.mp4", "b.wav", "--lane", "express")
    assert code == ExitCode.USAGE


def test_missing_endpoint_names_how_to_configure_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MUSETALK_API_URL", "MUSETALK_API_KEY", "MUSETALK_STACK"):
        monkeypatch.delenv(name, raising=False)
    stdout = io.StringIO()

    code = main(["--json", "avatars"], stdout=stdout)

    assert code == ExitCode.USAGE
    error = json.loads(stdout.getvalue())["error"]
    assert error["field"] == "api_url"
    assert "MUSETALK_API_URL" in error["message"]


def test_environment_supplies_the_endpoint(
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSETALK_API_URL", API_URL)
    monkeypatch.setenv("MUSETALK_API_KEY", "from-env")

    code = main(["avatars"], stdout=io.StringIO(), transport=fake_api.transport())

    assert code == ExitCode.OK
    assert fake_api.requests[0].headers["x-api-key"] == "from-env"


def _request(api: FakeApi, method: str, path: str) -> httpx.Request:
    return next(r for r in api.requests if r.method == method and r.url.path.endswith(path))


def test_a_file_over_the_lane_limit_is_refused_before_uploading(
    fake_api: FakeApi, media: dict[str, Path]
) -> None:
    # Given the API allows smaller uploads than the audio file
    fake_api.max_upload_bytes = 10

    code, _, err = run(fake_api, "submit", "av-1", str(media["audio"]))

    # Then the CLI says so, naming the file, and nothing is sent to storage or queued
    assert code == ExitCode.INVALID_REQUEST
    assert "speech.wav" in err
    assert "(field: file)" in err
    assert fake_api.uploads == []
    assert ("POST", "/v1/jobs") not in list(fake_api.api_requests())


def test_a_submit_the_service_could_not_take_is_retried_with_the_same_key(
    fake_api: FakeApi, media: dict[str, Path]
) -> None:
    # Given the API answers the first submit with 503 (its "retry with the same key")
    fake_api.unavailable[("POST", "/v1/jobs")] = 1

    code, out, _ = run(fake_api, "submit", "av-1", str(media["audio"]))

    # Then the CLI retried once, with the same Idempotency-Key, and got the job
    assert code == ExitCode.OK
    assert out.strip() == "job-1"
    submits = [r for r in fake_api.requests if r.method == "POST" and r.url.path.endswith("jobs")]
    assert len(submits) == 2
    assert len({r.headers["Idempotency-Key"] for r in submits}) == 1


def test_uploads_are_not_retried_because_each_creates_a_new_upload(
    fake_api: FakeApi, media: dict[str, Path]
) -> None:
    fake_api.unavailable[("POST", "/v1/uploads")] = 1

    code, _, _ = run(fake_api, "submit", "av-1", str(media["audio"]))

    assert code == ExitCode.SERVICE
    assert list(fake_api.api_requests()) == [("POST", "/v1/uploads")]
