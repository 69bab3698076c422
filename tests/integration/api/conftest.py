"""Each API integration test gets a fresh deployment on the session's moto server."""

from __future__ import annotations

import io
import json
import os
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.api import idempotent_submit
from runtime.api.entrypoints import rest
from runtime.common.names import EnvVar
from runtime.local.resources import LocalResources
from tests.support.api_events import FakeLambdaContext, rest_event
from tests.support.moto_server import local_client, provision_stage, reset_moto

TENANTS = {"key-a": "tenant-a", "key-b": "tenant-b"}


@pytest.fixture
def deployment(moto_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalResources]:
    reset_moto(moto_env)
    resources = provision_stage(moto_env, "test")
    env = {**resources.runtime_env(), EnvVar.API_KEY_TENANTS: json.dumps(TENANTS)}
    env = {str(name): value for name, value in env.items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Names are stable across resets, so the cached runtime (clients, idempotency layer) stays
    # valid unless a test changed the environment; rebuilding it costs more than most tests.
    if _runtime_env.get("env") != env:
        idempotent_submit.runtime.cache_clear()
        _runtime_env["env"] = env
    yield resources
    if {name: os.environ.get(name) for name in env} != env:
        idempotent_submit.runtime.cache_clear()
        _runtime_env.clear()


_runtime_env: dict[str, dict[str, str]] = {}


Call = Callable[..., dict[str, Any]]


@pytest.fixture
def call_api(deployment: LocalResources) -> Call:
    """Invoke the API Lambda with a REST proxy event; returns the response with `json` parsed."""

    def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = rest.lambda_handler(rest_event(method, path, **kwargs), FakeLambdaContext())
        body = response.get("body")
        response["json"] = json.loads(body) if body else None
        return response

    return call


@pytest.fixture
def aws(deployment: LocalResources) -> Callable[[str], Any]:
    def client(service: str) -> Any:
        return local_client(service, deployment.endpoint_url)

    return client


MEDIA = Path(__file__).resolve().parents[3] / "examples" / "media"


def post_to_form(form: dict[str, Any], data: bytes, filename: str = "file") -> httpx.Response:
    """What a client does with a presigned POST: the fields, then the file, as multipart."""
    return httpx.post(
        form["url"],
        data=form["fields"],
        files={"file": (filename, data, form["fields"]["Content-Type"])},
        timeout=30,
    )


Upload = Callable[..., str]


@pytest.fixture
def upload(call_api: Call) -> Upload:
    """Create an upload through the API and POST `data` to its presigned form; returns its id."""

    def do(kind: str, data: bytes, *, api_key_id: str = "key-a", **body: Any) -> str:
        created = call_api(
            "POST", "/v1/uploads", body={"kind": kind, **body}, api_key_id=api_key_id
        )
        assert created["statusCode"] == 201, created["json"]
        sent = post_to_form(created["json"]["upload"], data)
        assert sent.status_code in (200, 201, 204), sent.text
        return str(created["json"]["upload_id"])

    return do


@pytest.fixture(scope="session")
def short_wav() -> bytes:
    return wav_bytes(seconds=2.0)


@pytest.fixture(scope="session")
def face_png() -> bytes:
    return (MEDIA / "musk.png").read_bytes()


def wav_bytes(*, seconds: float, rate: int = 8000) -> bytes:
    """A real (silent) mono 8-bit WAV of the given length."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(1)
        writer.setframerate(rate)
        writer.writeframes(b"\x80" * int(seconds * rate))
    return buffer.getvalue()


def queue_messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Drain a queue (moto delivers immediately; stop when a receive comes back empty)."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=300,
            WaitTimeSeconds=0,  # the lanes long-poll by default, as in the stack
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


def submit_body(audio_id: str, **overrides: Any) -> dict[str, Any]:
    return {"audio_upload_id": audio_id, "lane": "interactive", **overrides}


@pytest.fixture
def job_body(upload: Upload, short_wav: bytes, face_png: bytes) -> dict[str, Any]:
    """A valid job request: a short audio and a face, both uploaded through the API."""
    return submit_body(upload("audio", short_wav), avatar_upload_id=upload("image", face_png))


Submit = Callable[..., dict[str, Any]]


@pytest.fixture
def submit_job(call_api: Call, job_body: dict[str, Any]) -> Submit:
    """POST /v1/jobs with `job_body` (and `overrides`) under the Idempotency-Key `key`."""

    def submit(
        key: str, *, headers: dict[str, str] | None = None, **overrides: Any
    ) -> dict[str, Any]:
        return call_api(
            "POST",
            "/v1/jobs",
            body={**job_body, **overrides},
            headers={"Idempotency-Key": key, **(headers or {})},
        )

    return submit


def header(response: dict[str, Any], name: str) -> str | None:
    """A response header, from `headers` or `multiValueHeaders` (API Gateway merges both)."""
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return str(values[-1])
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


Events = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def completion_events(deployment: LocalResources, aws: Callable[[str], Any]) -> Events:
    """Subscribe a queue to the completion topic; the returned function drains what arrived as
    `{"event": <CompletionEvent JSON>, "attributes": {name: value}}`."""
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName="completion-capture")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws("sns").subscribe(TopicArn=deployment.completion_topic_arn, Protocol="sqs", Endpoint=arn)

    def drain() -> list[dict[str, Any]]:
        events = []
        for message in queue_messages(sqs, url):
            envelope = json.loads(message["Body"])
            events.append(
                {
                    "event": json.loads(envelope["Message"]),
                    "attributes": {
                        name: value["Value"]
                        for name, value in envelope.get("MessageAttributes", {}).items()
                    },
                }
            )
        return events

    return drain
