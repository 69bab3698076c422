"""A local stand-in for API Gateway: HTTP on localhost -> REST proxy event -> the API Lambda.

It does what the deployed gateway does before the Lambda runs: checks the `x-api-key` header
against its keys (403 like API Gateway otherwise), puts the key's id into
`requestContext.identity.apiKeyId` (the API maps that id to a tenant), caps the body at API
Gateway's 10 MiB, serializes invocations as one Lambda instance would, and answers CORS
preflights for the stage's browser origins as the stack's mock integrations do. It also serves
the playground page (`runtime.local.static_files`), which the deployed API does not.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runtime.api.cors import PREFLIGHT_HEADERS, PREFLIGHT_MAX_AGE_SECONDS
from runtime.local import static_files
from runtime.local.resources import LOCAL_ACCOUNT, LOCAL_REGION

STAGE_NAME = "local"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
LAMBDA_TIMEOUT_MS = 29_000  # API Gateway's integration timeout
API_KEY_HEADER = "x-api-key"
# Routes API Gateway serves without a key (the API description is public).
PUBLIC_PATHS = frozenset({"/v1/openapi.json"})

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class LocalLambdaContext:
    """The attributes of the Lambda context object that Powertools reads."""

    aws_request_id: str
    function_name: str = "musetalk-local-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    log_group_name: str = "/aws/lambda/musetalk-local-api"
    log_stream_name: str = "local"
    deadline: float = 0.0

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def proxy_event(
    *,
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: bytes,
    api_key_id: str | None,
    source_ip: str,
) -> dict[str, Any]:
    """The REST API (v1) proxy integration event for one request."""
    parts = urlsplit(raw_path)
    path = parts.path or "/"
    query = parse_qs(parts.query, keep_blank_values=True)
    try:
        text: str | None = body.decode() if body else None
        is_base64 = False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode(), True
    request_id = str(uuid.uuid4())
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT,
            "apiId": "local",
            "domainName": headers.get("Host", "localhost"),
            "httpMethod": method,
            "path": f"/{STAGE_NAME}{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "resourcePath": "/{proxy+}",
            "stage": STAGE_NAME,
            "identity": {
                "apiKey": None,  # API Gateway hides the key value from the integration
                "apiKeyId": api_key_id,
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent", ""),
            },
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


class LocalGateway(ThreadingHTTPServer):
    """Serves `handler` on 127.0.0.1:`port`; `api_keys` maps key values to key ids."""

    daemon_threads = True

    def __init__(
        self,
        port: int,
        handler: Handler,
        api_keys: dict[str, str],
        cors_origins: tuple[str, ...] = (),
    ) -> None:
        super().__init__(("127.0.0.1", port), _RequestHandler)
        self.lambda_handler = handler
        self.api_keys = dict(api_keys)
        self.cors_origins = frozenset(cors_origins)
        self.invoke_lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        context = LocalLambdaContext(
            aws_request_id=event["requestContext"]["requestId"],
            deadline=time.monotonic() + LAMBDA_TIMEOUT_MS / 1000,
        )
        with self.invoke_lock:
            return self.lambda_handler(event, context)


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalGateway
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        """A CORS preflight, answered as the stack's mock integration does: no key, no Lambda,
        and the origin only when it is one of the stage's."""
        cors = self._gateway_cors_headers()
        self.send_response(HTTPStatus.NO_CONTENT)
        for name, value in cors.items():
            self.send_header(name, value)
        if cors:
            self.send_header("Access-Control-Allow-Methods", "DELETE,GET,POST")
            self.send_header("Access-Control-Allow-Headers", ",".join(PREFLIGHT_HEADERS))
            self.send_header("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_SECONDS))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _gateway_cors_headers(self) -> dict[str, str]:
        """What the stack's gateway responses add to the gateway's own answers."""
        origin = self.headers.get("Origin", "")
        if origin not in self.server.cors_origins:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access log without query strings or headers (they may carry tokens or keys)."""
        print(f"gateway {self.command} {urlsplit(self.path).path} {code}", flush=True)

    def log_error(self, format: str, *args: Any) -> None:
        print(f"gateway error {args[0] if args else ''}", flush=True)

    def _handle(self) -> None:
        if self.command == "GET" and self._serve_static(urlsplit(self.path).path):
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body must not be parsed as a next request
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"message": "Request Too Long"})
            return
        body = self.rfile.read(length) if length else b""
        headers = {name: value for name, value in self.headers.items()}
        path = urlsplit(self.path).path
        key_id = self.server.api_keys.get(self.headers.get(API_KEY_HEADER, ""))
        if key_id is None and path not in PUBLIC_PATHS:
            self._reply(HTTPStatus.FORBIDDEN, {"message": "Forbidden"})
            return
        event = proxy_event(
            method=self.command,
            raw_path=self.path,
            headers=headers,
            body=body,
            api_key_id=key_id,
            source_ip=self.client_address[0],
        )
        try:
            result = self.server.invoke(event)
        except Exception as error:  # the Lambda crashed: API Gateway answers 502
            print(f"gateway: handler raised {type(error).__name__}", flush=True)
            self._reply(HTTPStatus.BAD_GATEWAY, {"message": "Internal server error"})
            return
        self._send_result(result)

    def _serve_static(self, path: str) -> bool:
        """Answer a GET of the playground's files (no key needed); False for anything else."""
        if path == static_files.PLAYGROUND_PATH.rstrip("/"):
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", static_files.PLAYGROUND_PATH)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True
        found = static_files.lookup(path)
        if found is None:
            return False
        data = found.path.read_bytes()
        self.send_response(HTTPStatus.OK)
        for name, value in found.headers().items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return True

    def _send_result(self, result: dict[str, Any]) -> None:
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        self.send_response(int(result.get("statusCode", 200)))
        headers: dict[str, list[str]] = {
            name: [str(value)] for name, value in (result.get("headers") or {}).items()
        }
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = [str(value) for value in values]
        for name, values in headers.items():
            if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                for value in values:
                    self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reply(self, status: HTTPStatus, document: dict[str, Any]) -> None:
        self._send_result(
            {
                "statusCode": int(status),
                "headers": {"Content-Type": "application/json", **self._gateway_cors_headers()},
                "body": json.dumps(document),
            }
        )
