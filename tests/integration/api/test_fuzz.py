"""Property: whatever a caller sends to any route, the answer is never a 5xx, and every 4xx has
the documented error shape. Hypothesis mixes garbage with almost-valid requests (real upload,
avatar and job ids) so the deep paths (ownership, HeadObject, idempotency) are exercised too."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from runtime.api.errors import ErrorResponse
from runtime.api.models import (
    Avatar,
    AvatarList,
    Job,
    JobAccepted,
    JobCancelled,
    JobList,
    UploadCreated,
)
from tests.integration.api.conftest import Call, Upload

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)
safe_ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


def _ids(known: list[str]) -> st.SearchStrategy[Any]:
    return st.sampled_from(known) | safe_ids | st.text(max_size=80) | json_scalars


def _avatar_options() -> st.SearchStrategy[Any]:
    return (
        st.fixed_dictionaries(
            {},
            optional={
                "bbox_shift": st.integers(-60, 60) | json_scalars,
                "extra_margin": st.integers(-5, 50),
                "fps": st.integers(-1, 100),
                "blend_mode": st.sampled_from(["jaw", "raw", "neck", "x"]),
            },
        )
        | json_values
    )


def _job_bodies(known: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    anything = st.fixed_dictionaries(
        {},
        optional={
            "audio_upload_id": _ids(known["audio"]),
            "avatar_upload_id": _ids(known["face"]),
            "avatar_id": _ids(known["avatar"]),
            "avatar_options": _avatar_options(),
            "lane": st.sampled_from(["interactive", "batch", "other"]) | json_scalars,
            "options": st.fixed_dictionaries(
                {}, optional={"skip_silence": st.booleans(), "sync_threshold": st.floats()}
            )
            | json_values,
            "webhook_url": st.sampled_from(
                [
                    "https://hooks.example.com/x",
                    "http://hooks.example.com/x",
                    "https://169.254.169.254/",
                    "https://0x7f000001/",
                    "https://[fe80::1]/",
                    "https://exa mple.com/",
                    "https://",
                    "https://example.com:99999/",
                ]
            )
            | st.text(max_size=100),
            "extra": json_values,
        },
    )
    # Bodies that pass the schema, so ownership, idempotency and enqueue run too.
    plausible = st.fixed_dictionaries(
        {
            "audio_upload_id": st.sampled_from(known["audio"] + known["face"]),
            "lane": st.sampled_from(["interactive", "batch"]),
        },
        optional={
            "avatar_id": st.sampled_from(known["avatar"]),
            "avatar_upload_id": st.sampled_from(known["face"] + known["audio"]),
            "avatar_options": st.fixed_dictionaries(
                {}, optional={"bbox_shift": st.integers(-40, 40), "blend_mode": st.just("raw")}
            ),
            "webhook_url": st.sampled_from(["https://hooks.example.com/x", "https://10.1.2.3/"]),
        },
    )
    return plausible | plausible | anything


def _upload_bodies() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {},
        optional={
            "kind": st.sampled_from(["audio", "video", "image", "pdf"]) | json_scalars,
            "content_type": st.sampled_from(["audio/wav", "image/png", "text/html"]) | st.text(),
        },
    )


def _avatar_bodies(known: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {},
        optional={"upload_id": _ids(known["face"] + known["audio"]), "options": _avatar_options()},
    )


@st.composite
def requests(draw: st.DrawFn, known: dict[str, list[str]]) -> dict[str, Any]:
    job_id = draw(_ids(known["job"]) | st.just("../../etc/passwd"))
    avatar_id = draw(_ids(known["avatar"]))
    method, path = draw(
        st.sampled_from(
            [
                ("POST", "/v1/uploads"),
                ("POST", "/v1/avatars"),
                ("GET", "/v1/avatars"),
                ("GET", f"/v1/avatars/{avatar_id}"),
                ("POST", "/v1/jobs"),
                ("POST", "/v1/jobs"),
                ("POST", "/v1/jobs"),
                ("GET", "/v1/jobs"),
                ("GET", f"/v1/jobs/{job_id}"),
                ("DELETE", f"/v1/jobs/{job_id}"),
                ("GET", "/v1/openapi.json"),
                ("PATCH", "/v1/jobs"),
            ]
        )
    )
    fitting = {
        "/v1/jobs": _job_bodies(known),
        "/v1/uploads": _upload_bodies(),
        "/v1/avatars": _avatar_bodies(known),
    }.get(path, json_values)
    body = draw(
        fitting.map(json.dumps)
        | fitting.map(json.dumps)
        | json_values.map(json.dumps)
        | st.none()
        | st.text(max_size=200)
    )
    headers = draw(
        st.fixed_dictionaries(
            {
                "Idempotency-Key": st.sampled_from(["k1", "k2", "k3"])
                | st.sampled_from(["k1", "k2", "k3"])
                | st.text(max_size=300)
                | st.none(),
            },
            optional={
                "X-Correlation-Id": st.text(max_size=200),
                "Content-Type": st.sampled_from(
                    ["application/json", "application/json; charset=utf-8", "text/plain"]
                ),
            },
        ).map(lambda headers: {k: v for k, v in headers.items() if v is not None})
    )
    query = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "limit": st.sampled_from(["1", "100", "0", "101", "-1", "x"]) | st.text(max_size=5),
                "status": st.sampled_from(["QUEUED", "CANCELLED", "done"]) | st.text(max_size=10),
                "next_token": st.text(max_size=100),
                "purge": st.sampled_from(["true", "false", "yes", "2"]) | st.text(max_size=5),
            },
        )
        | st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=3)
    )
    api_key_id = draw(st.sampled_from(["key-a", "key-a", "key-a", "key-b", None, "unknown"]))
    return {
        "method": method,
        "path": path,
        "raw_body": body,
        "headers": headers,
        "query": query,
        "api_key_id": api_key_id,
    }


def _documented_success(method: str, path: str) -> type[BaseModel]:
    """The model the OpenAPI document promises for a 2xx of this route."""
    if path == "/v1/openapi.json":
        return _Document
    parts = path.strip("/").split("/")
    collection, has_id = parts[1], len(parts) == 3
    return {
        ("POST", "uploads", False): UploadCreated,
        ("POST", "avatars", False): Avatar,
        ("GET", "avatars", False): AvatarList,
        ("GET", "avatars", True): Avatar,
        ("POST", "jobs", False): JobAccepted,
        ("GET", "jobs", False): JobList,
        ("GET", "jobs", True): Job,
        ("DELETE", "jobs", True): JobCancelled,
    }[(method, collection, has_id)]


class _Document(BaseModel):
    openapi: str
    paths: dict[str, Any]


@pytest.fixture
def known_ids(
    call_api: Call, upload: Upload, short_wav: bytes, face_png: bytes
) -> dict[str, list[str]]:
    audio = upload("audio", short_wav)
    face = upload("image", face_png)
    avatar = call_api("POST", "/v1/avatars", body={"upload_id": face})["json"]["avatar_id"]
    job = call_api(
        "POST",
        "/v1/jobs",
        body={"audio_upload_id": audio, "avatar_id": avatar, "lane": "batch"},
        headers={"Idempotency-Key": "seed"},
    )["json"]["job_id"]
    return {"audio": [audio], "face": [face], "avatar": [avatar], "job": [job]}


@pytest.mark.slow
def test_no_request_gets_a_5xx_and_every_4xx_is_the_documented_shape(
    call_api: Call, known_ids: dict[str, list[str]]
) -> None:
    @settings(
        max_examples=int(os.environ.get("API_FUZZ_EXAMPLES", "250")),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(request=requests(known_ids))
    def check(request: dict[str, Any]) -> None:
        method, path = request.pop("method"), request.pop("path")
        response = call_api(method, path, **request)
        status = response["statusCode"]
        event(f"status {status}")  # --hypothesis-show-statistics shows how deep the fuzz got
        assert status < 500, response["body"]
        if status >= 400:
            ErrorResponse.model_validate_json(response["body"])
        else:
            _documented_success(method, path).model_validate_json(response["body"])

    check()
