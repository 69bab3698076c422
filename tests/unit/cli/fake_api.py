"""An in-memory stand-in for the job API and S3 presigned endpoints, behind httpx.MockTransport.

It follows the API contract the CLI codes against (routes, JSON shapes, error documents) and
records every request, so tests assert what the CLI sent as well as what it printed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

API_URL = "https://api.example.test/prod"
STORAGE_URL = "https://uploads.example.test/bucket"
DOWNLOAD_URL = "https://outputs.example.test/bucket/out.mp4?X-Amz-Signature=secret"
MP4_BYTES = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64


@dataclass
class FakeApi:
    # Statuses GET /v1/jobs/{id} walks through, one per poll; the last one repeats.
    statuses: list[str] = field(default_factory=lambda: ["QUEUED", "RENDERING", "SUCCEEDED"])
    # (method, path) -> (status code, body) answered instead of the normal behaviour.
    failures: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # (method, path) -> how many times to answer 503 (Retry-After: 0) before behaving normally.
    unavailable: dict[tuple[str, str], int] = field(default_factory=dict)
    max_upload_bytes: int = 20 * 1024 * 1024
    requests: list[httpx.Request] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    _polls: int = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def api_requests(self) -> Iterator[tuple[str, str]]:
        for request in self.requests:
            if str(request.url).startswith(API_URL):
                yield request.method, request.url.path.removeprefix("/prod")

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = str(request.url)
        if url.startswith(STORAGE_URL):
            self.uploads.append({"body": request.read(), "headers": dict(request.headers)})
            return httpx.Response(204)
        if url.startswith(DOWNLOAD_URL.split("?")[0]):
            return httpx.Response(200, content=MP4_BYTES)
        path = request.url.path.removeprefix("/prod")
        if self.unavailable.get((request.method, path), 0) > 0:
            self.unavailable[(request.method, path)] -= 1
            return httpx.Response(
                503,
                headers={"Retry-After": "0"},
                json={"error": {"code": "DEPENDENCY_UNAVAILABLE", "message": "retry"}},
            )
        failure = self.failures.get((request.method, path))
        if failure is not None:  # Retry-After: 0 keeps the CLI's retries of 429/503 instant
            return httpx.Response(failure[0], headers={"Retry-After": "0"}, json=failure[1])
        return self._route(request, path)

    def _route(self, request: httpx.Request, path: str) -> httpx.Response:
        if request.method == "POST" and path == "/v1/uploads":
            body = json.loads(request.content)
            upload_id = f"up-{body['kind']}-{len(self.uploads)}"
            return httpx.Response(
                201,
                json={
                    "upload_id": upload_id,
                    "kind": body["kind"],
                    "content_type": body["content_type"],
                    "max_bytes": self.max_upload_bytes,
                    "expires_at": "2030-01-01T00:00:00Z",
                    "upload": {
                        "url": STORAGE_URL,
                        "fields": {"key": f"tenants/t/uploads/{upload_id}/{body['kind']}"},
                    },
                },
            )
        if request.method == "POST" and path == "/v1/avatars":
            return httpx.Response(201, json={"avatar_id": "av-1", "status": "REGISTERED"})
        if request.method == "GET" and path == "/v1/avatars":
            return httpx.Response(200, json={"avatars": [{"avatar_id": "av-1"}]})
        if request.method == "POST" and path == "/v1/jobs":
            return httpx.Response(202, json={"job_id": "job-1", "status": "QUEUED"})
        if request.method == "GET" and path == "/v1/jobs":
            return httpx.Response(200, json={"jobs": [self._job("SUCCEEDED")]})
        if request.method == "GET" and path.startswith("/v1/jobs/"):
            status = self.statuses[min(self._polls, len(self.statuses) - 1)]
            self._polls += 1
            return httpx.Response(200, json=self._job(status))
        if request.method == "DELETE" and path.startswith("/v1/jobs/"):
            return httpx.Response(200, json={"job_id": "job-1", "status": "CANCELLED"})
        return httpx.Response(404, json={"error": {"code": "NOT_FOUND", "message": "no route"}})

    @staticmethod
    def _job(status: str) -> dict[str, Any]:
        job: dict[str, Any] = {
            "job_id": "job-1",
            "status": status,
            "lane": "interactive",
            "progress": 0.5 if status == "RENDERING" else 0.0,
            "timings": {"queue_wait_ms": 12.0, "prepare_ms": 1234.0},
        }
        if status == "SUCCEEDED":
            job.update(progress=1.0, output_url=DOWNLOAD_URL, sync_confidence=0.71)
        if status == "FAILED":
            job["error"] = {"code": "NO_FACE", "message": "no face in the avatar"}
        return job
