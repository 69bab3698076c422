"""A thin typed client for the job API (issue 4), over httpx.

All knowledge of routes and JSON shapes sits here, so the commands and local mode share it. The
client never logs or prints presigned URLs: they are credentials for as long as they live.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runtime.cli.errors import CliError, ExitCode, exit_code_for_status
from runtime.common.jobs import AvatarOptions, RenderOptions
from runtime.common.names import Lane
from runtime.fileio import atomic_path

API_KEY_HEADER = "x-api-key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
CORRELATION_HEADER = "X-Correlation-Id"
# Throttling and "dependency unavailable" (the API's 503 says: retry with the same key).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENCY_IN_PROGRESS = "IDEMPOTENCY_IN_PROGRESS"
MAX_ATTEMPTS = 3
MAX_RETRY_AFTER_SECONDS = 10.0

# Upload kind and content type by file extension: the types the API accepts (its presigned POST
# pins the content type, so the file must be sent with exactly this one).
MEDIA_TYPES: dict[str, tuple[str, str]] = {
    ".wav": ("audio", "audio/wav"),
    ".mp3": ("audio", "audio/mpeg"),
    ".m4a": ("audio", "audio/mp4"),
    ".mp4": ("video", "video/mp4"),
    ".mov": ("video", "video/quicktime"),
    ".png": ("image", "image/png"),
    ".jpg": ("image", "image/jpeg"),
    ".jpeg": ("image", "image/jpeg"),
}


def media_type(path: Path) -> tuple[str, str]:
    """(upload kind, content type) of a local media file, by extension."""
    try:
        return MEDIA_TYPES[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(MEDIA_TYPES))
        raise CliError(
            ExitCode.USAGE, f"{path.name}: unsupported media type (expected one of {known})"
        ) from None


@dataclass(frozen=True)
class PresignedPost:
    upload_id: str
    url: str
    fields: dict[str, str]


class ApiClient:
    """One API endpoint and key. Use as a context manager to close the connection pool."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"user-agent": "musetalk-cli"}
        if api_key:
            headers[API_KEY_HEADER] = api_key
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout_seconds,
            transport=transport,
        )
        # Uploads and downloads go to presigned S3 URLs: no API key, no base URL.
        self._storage = httpx.Client(timeout=timeout_seconds, transport=transport)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._storage.close()

    # Uploads and avatars.

    def create_upload(self, path: Path) -> PresignedPost:
        kind, content_type = media_type(path)
        size, answer = (
            _size_of(path),
            self._call("POST", "v1/uploads", json={"kind": kind, "content_type": content_type}),
        )
        if size > int(answer.get("max_bytes", size)):
            raise CliError(
                ExitCode.INVALID_REQUEST,
                f"{path.name} is {size} bytes; this lane accepts {kind} up to "
                f"{answer['max_bytes']} bytes",
                field="file",
            )
        post = answer["upload"]
        return PresignedPost(
            upload_id=str(answer["upload_id"]), url=str(post["url"]), fields=dict(post["fields"])
        )

    def upload_file(self, post: PresignedPost, path: Path) -> None:
        """POST the file to S3 with the presigned form fields (the file part must come last)."""
        _, content_type = media_type(path)
        with path.open("rb") as stream:
            try:
                response = self._storage.post(
                    post.url, data=post.fields, files={"file": (path.name, stream, content_type)}
                )
            except httpx.TransportError as error:
                raise CliError(ExitCode.SERVICE, f"upload of {path.name} failed: {error}") from None
        if response.status_code >= 300:
            # S3 answers XML; its <Code> names the broken condition (size, type, expiry).
            raise CliError(
                exit_code_for_status(response.status_code),
                f"storage refused the upload of {path.name}: HTTP {response.status_code} "
                f"{_s3_error_code(response.text)}",
                field="file",
                status_code=response.status_code,
            )

    def upload(self, path: Path) -> str:
        """Upload a local file through a presigned POST and return its upload id."""
        post = self.create_upload(path)
        self.upload_file(post, path)
        return post.upload_id

    def create_avatar(self, upload_id: str, options: AvatarOptions) -> dict[str, Any]:
        body = {"upload_id": upload_id, "options": options.model_dump()}
        return self._call("POST", "v1/avatars", json=body)

    def list_avatars(self) -> dict[str, Any]:
        return self._call("GET", "v1/avatars")

    # Jobs.

    def create_job(
        self,
        *,
        avatar_id: str,
        audio_upload_id: str,
        lane: Lane,
        options: RenderOptions,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "avatar_id": avatar_id,
            "audio_upload_id": audio_upload_id,
            "lane": lane.value,
            "options": options.model_dump(),
        }
        if webhook_url:
            body["webhook_url"] = webhook_url
        key = idempotency_key or str(uuid.uuid4())
        return self._call("POST", "v1/jobs", json=body, headers={IDEMPOTENCY_HEADER: key})

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"v1/jobs/{_path_id(job_id, 'job_id')}")

    def list_jobs(
        self, *, status: str | None = None, limit: int | None = None, next_token: str | None = None
    ) -> dict[str, Any]:
        params = {"status": status, "limit": limit, "next_token": next_token}
        return self._call(
            "GET", "v1/jobs", params={k: v for k, v in params.items() if v is not None}
        )

    def cancel_job(
        self, job_id: str, *, purge: bool = False, reason: str | None = None
    ) -> dict[str, Any]:
        params = {"purge": "true"} if purge else {}
        if reason:
            params["reason"] = reason
        return self._call("DELETE", f"v1/jobs/{_path_id(job_id, 'job_id')}", params=params)

    def download(self, url: str, destination: Path) -> int:
        """Stream a presigned download to `destination` (atomically); returns the byte count."""
        written = 0
        with atomic_path(destination) as partial:
            try:
                with self._storage.stream("GET", url) as response:
                    if response.status_code != 200:
                        raise CliError(
                            exit_code_for_status(response.status_code),
                            f"download failed: HTTP {response.status_code} "
                            f"{_s3_error_code(response.read().decode(errors='replace'))}",
                            status_code=response.status_code,
                        )
                    with partial.open("wb") as sink:
                        for chunk in response.iter_bytes(chunk_size=1024 * 1024):
                            sink.write(chunk)
                            written += len(chunk)
            except httpx.TransportError as error:
                raise CliError(ExitCode.SERVICE, f"download failed: {error}") from None
        return written

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        # Reads, cancels and keyed submits are safe to repeat: retry what a retry can fix.
        retryable = method in {"GET", "DELETE"} or IDEMPOTENCY_HEADER in (headers or {})
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as error:
                if retryable and attempt < MAX_ATTEMPTS:
                    time.sleep(_backoff(attempt, None))
                    continue
                raise CliError(
                    ExitCode.SERVICE, f"cannot reach the API at {self._http.base_url}: {error}"
                ) from None
            if retryable and attempt < MAX_ATTEMPTS and _worth_retrying(response):
                time.sleep(_backoff(attempt, response.headers.get("Retry-After")))
                continue
            break
        if response.status_code >= 400:
            raise api_error(response)
        try:
            answer = response.json()
        except ValueError:
            raise CliError(
                ExitCode.SERVICE, f"the API answered HTTP {response.status_code} without JSON"
            ) from None
        if not isinstance(answer, dict):
            raise CliError(ExitCode.SERVICE, "the API answered JSON that is not an object")
        return answer


def _worth_retrying(response: httpx.Response) -> bool:
    """Throttling, our 503, and the same Idempotency-Key still being processed by a parallel
    request (409 IDEMPOTENCY_IN_PROGRESS: the API says retry after `Retry-After`)."""
    if response.status_code in RETRY_STATUSES:
        return True
    return response.status_code == 409 and api_error(response).code == IDEMPOTENCY_IN_PROGRESS


def _backoff(attempt: int, retry_after: str | None) -> float:
    """The server's Retry-After when it gives one (capped), else 0.5 s, 1 s, 2 s, ..."""
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER_SECONDS)
        except ValueError:
            pass
    return float(0.5 * 2 ** (attempt - 1))


def api_error(response: httpx.Response) -> CliError:
    """The API's `{"error": {code, message, field}}` as a CliError; API Gateway's own
    `{"message": ...}` (missing key, throttling) too."""
    code = field = None
    message = f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = _str_or_none(error.get("code"))
            field = _str_or_none(error.get("field"))
            message = str(error.get("message") or message)
        elif isinstance(body.get("message"), str):
            message = body["message"]
    return CliError(
        exit_code_for_status(response.status_code),
        message,
        field=field,
        code=code,
        status_code=response.status_code,
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _path_id(value: str, name: str) -> str:
    """Ids go into URL paths: refuse anything that could change the route."""
    if not value or any(not (c.isalnum() or c in "-_") for c in value):
        raise CliError(ExitCode.USAGE, f"{name} must contain only letters, digits, - and _")
    return value


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as error:
        raise CliError(ExitCode.USAGE, f"cannot read {path}: {error.strerror}") from None


def _s3_error_code(xml_text: str) -> str:
    start, end = xml_text.find("<Code>"), xml_text.find("</Code>")
    return xml_text[start + 6 : end] if 0 <= start < end else ""
