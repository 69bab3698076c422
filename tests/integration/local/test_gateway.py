"""The local API Gateway: keys to key ids, proxy events a Powertools resolver routes, and
API Gateway's own answers (403 without a key, 502 when the Lambda crashes)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from runtime.local.gateway import LocalGateway
from runtime.local.processes import free_port
from runtime.local.static_files import HLS_SCRIPT_FILE, HLS_SCRIPT_PATH, PLAYGROUND_DIR

app = APIGatewayRestResolver()


@app.get("/v1/whoami")
def whoami() -> dict[str, Any]:
    event = app.current_event
    return {
        "api_key_id": event.request_context.identity.api_key_id,
        "query": event.query_string_parameters,
        "correlation": event.headers.get("X-Correlation-Id"),
    }


@app.post("/v1/echo")
def echo() -> dict[str, Any]:
    return {"body": app.current_event.json_body}


@app.get("/v1/openapi.json")
def document() -> dict[str, Any]:
    return {"openapi": "3.1.0"}


@app.get("/v1/crash")
def crash() -> dict[str, Any]:
    raise RuntimeError("boom")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    assert context.get_remaining_time_in_millis() > 0
    if event["path"] == "/v1/crash":
        raise RuntimeError("the Lambda crashed")
    return app.resolve(event, context)


@pytest.fixture(scope="module")
def gateway() -> Iterator[httpx.Client]:
    server = LocalGateway(free_port(), handler, {"secret-key": "key-id-1"})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    with httpx.Client(base_url=f"http://{host!s}:{port}") as client:
        yield client
    server.shutdown()
    server.server_close()


def test_a_known_key_reaches_the_lambda_as_its_key_id(gateway: httpx.Client) -> None:
    response = gateway.get(
        "/v1/whoami?status=QUEUED&limit=5",
        headers={"x-api-key": "secret-key", "X-Correlation-Id": "abc-1"},
    )

    assert response.status_code == 200
    assert response.json() == {
        "api_key_id": "key-id-1",
        "query": {"status": "QUEUED", "limit": "5"},
        "correlation": "abc-1",
    }


def test_a_json_body_round_trips(gateway: httpx.Client) -> None:
    response = gateway.post(
        "/v1/echo", json={"lane": "batch", "n": [1, 2]}, headers={"x-api-key": "secret-key"}
    )
    assert response.json() == {"body": {"lane": "batch", "n": [1, 2]}}


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}])
def test_a_missing_or_unknown_key_is_refused_before_the_lambda(
    gateway: httpx.Client, headers: dict[str, str]
) -> None:
    response = gateway.get("/v1/whoami", headers=headers)
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}


def test_the_api_description_needs_no_key(gateway: httpx.Client) -> None:
    assert gateway.get("/v1/openapi.json").json() == {"openapi": "3.1.0"}


def test_a_crashing_lambda_is_a_502_without_details(gateway: httpx.Client) -> None:
    response = gateway.get("/v1/crash", headers={"x-api-key": "secret-key"})
    assert response.status_code == 502
    assert "crashed" not in response.text


def test_an_oversized_body_is_413_without_reading_it(gateway: httpx.Client) -> None:
    # Given a request that announces more than API Gateway's 10 MiB (and sends none of it)
    host, port = gateway.base_url.host, gateway.base_url.port
    request = (
        "POST /v1/echo HTTP/1.1\r\nHost: local\r\nx-api-key: secret-key\r\n"
        f"Content-Length: {10 * 1024 * 1024 + 1}\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=5) as connection:
        connection.sendall(request.encode())
        status_line = connection.makefile("rb").readline()

    # Then the gateway answers 413 at once
    assert status_line.startswith(b"HTTP/1.1 413")


def test_the_playground_page_is_served_without_a_key(gateway: httpx.Client) -> None:
    # When a browser opens the page and its scripts
    page = gateway.get("/playground/")
    script = gateway.get("/playground/js/api.js")
    player = gateway.get("/node_modules/hls.js/dist/hls.light.min.js")

    # Then they are the repository's files, typed, with a policy that keeps scripts to this origin
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.text == (PLAYGROUND_DIR / "index.html").read_text()
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.text == (PLAYGROUND_DIR / "js" / "api.js").read_text()
    assert f'src="..{HLS_SCRIPT_PATH}"' in page.text  # the page's relative path to hls.js
    if HLS_SCRIPT_FILE.is_file():  # installed by `npm ci`
        assert player.content == HLS_SCRIPT_FILE.read_bytes()
    assert gateway.get("/playground", follow_redirects=True).text == page.text


@pytest.mark.parametrize(
    "path",
    [
        "/playground/../runtime/local/gateway.py",
        "/playground/%2e%2e/pyproject.toml",
        "/playground/js/",
        "/playground/nothing.js",
        "/node_modules/hls.js/package.json",
        "/node_modules/aws-cdk/package.json",
    ],
)
def test_nothing_but_the_pages_files_is_served_without_a_key(
    gateway: httpx.Client, path: str
) -> None:
    # When a path outside the page's files is asked for without a key
    response = gateway.send(
        httpx.Request("GET", gateway.base_url.join("/").copy_with(raw_path=path.encode()))
    )

    # Then it is not a static file: it goes to the API's key check like any route
    assert response.status_code == 403


PAGE = "https://page.example"


@pytest.fixture(scope="module")
def gateway_for_page() -> Iterator[httpx.Client]:
    server = LocalGateway(free_port(), handler, {"secret-key": "key-id-1"}, cors_origins=(PAGE,))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    with httpx.Client(base_url=f"http://{host!s}:{port}") as client:
        yield client
    server.shutdown()
    server.server_close()


def test_a_preflight_from_an_allowed_page_is_answered_without_a_key(
    gateway_for_page: httpx.Client,
) -> None:
    # When the page's browser asks before a JSON POST with a key and an Idempotency-Key
    answer = gateway_for_page.options(
        "/v1/jobs",
        headers={
            "Origin": PAGE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,idempotency-key,x-api-key",
        },
    )

    # Then the gateway allows that origin, the method and those headers, as the stack's mock does
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == PAGE
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower().split(",")
    assert {"content-type", "idempotency-key", "x-api-key"} <= set(allowed)


def test_another_origin_gets_no_cors_headers_from_the_gateway(
    gateway_for_page: httpx.Client,
) -> None:
    other = {"Origin": "https://attacker.example", "Access-Control-Request-Method": "POST"}
    assert (
        "access-control-allow-origin"
        not in gateway_for_page.options("/v1/jobs", headers=other).headers
    )
    refused = gateway_for_page.get("/v1/whoami", headers={"Origin": "https://attacker.example"})
    assert "access-control-allow-origin" not in refused.headers


def test_the_gateways_own_refusal_is_readable_by_an_allowed_page(
    gateway_for_page: httpx.Client,
) -> None:
    refused = gateway_for_page.get("/v1/whoami", headers={"Origin": PAGE})
    assert refused.status_code == 403
    assert refused.headers["access-control-allow-origin"] == PAGE
