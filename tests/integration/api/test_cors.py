"""The API's answers carry CORS headers for the stage's browser origins only, errors included,
so a page on an allowed origin (the playground) can read them and any other page cannot."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from runtime.api import idempotent_submit
from runtime.common.names import EnvVar
from runtime.local.resources import LocalResources
from tests.integration.api.conftest import Call

PAGE = "https://playground.example.com"


@pytest.fixture
def with_origins(deployment: LocalResources, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(
        EnvVar.CORS_ALLOWED_ORIGINS.value, json.dumps([PAGE, "http://localhost:8000"])
    )
    idempotent_submit.runtime.cache_clear()
    yield
    idempotent_submit.runtime.cache_clear()


@pytest.mark.usefixtures("with_origins")
@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/v1/jobs", {}, 200),
        ("GET", "/v1/jobs", {"api_key_id": None}, 401),  # rejected before any route
        ("POST", "/v1/avatars", {"body": {"upload_id": "x", "options": {"fps": 99}}}, 400),
        ("GET", "/v1/jobs/job_nope", {}, 404),
    ],
)
def test_an_allowed_page_can_read_every_answer(
    call_api: Call, method: str, path: str, kwargs: dict[str, object], status: int
) -> None:
    # When the playground's origin calls the API
    response = call_api(method, path, headers={"Origin": PAGE}, **kwargs)

    # Then the answer, success or error, names that origin and exposes the correlation id
    assert response["statusCode"] == status
    headers = response["headers"]
    assert headers["Access-Control-Allow-Origin"] == PAGE
    assert "X-Correlation-Id" in headers["Access-Control-Expose-Headers"]
    assert headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Credentials" not in headers


@pytest.mark.usefixtures("with_origins")
def test_another_site_gets_no_cors_headers(call_api: Call) -> None:
    response = call_api("GET", "/v1/jobs", headers={"Origin": "https://attacker.example"})
    assert response["statusCode"] == 200  # the key is valid; the browser withholds the answer
    assert "Access-Control-Allow-Origin" not in response["headers"]


def test_a_stage_without_origins_answers_no_page(call_api: Call) -> None:
    response = call_api("GET", "/v1/jobs", headers={"Origin": PAGE})
    assert "Access-Control-Allow-Origin" not in response["headers"]
