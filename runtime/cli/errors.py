"""Exit codes that scripts can rely on, and the one error type the commands raise.

Every failure the CLI reports maps to exactly one code; docs/cli.md lists them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    JOB_FAILED = 1  # the job ended FAILED or CANCELLED while we waited for it
    USAGE = 2  # bad arguments, missing configuration, unreadable local file
    INVALID_REQUEST = 3  # the API rejected the request (400, 413, 422): see the field
    NOT_FOUND = 4  # no such job, avatar or upload for this API key (404)
    AUTH = 5  # API key missing, unknown or not allowed (401, 403)
    CONFLICT = 6  # idempotency key reused with another body, or the job is already final (409)
    THROTTLED = 7  # rate limit or quota (429)
    SERVICE = 8  # the service or the network failed (5xx, connection, unreadable answer)
    TIMEOUT = 9  # `--timeout` passed before the job finished
    INTERRUPTED = 130  # Ctrl-C


_BY_STATUS = {
    400: ExitCode.INVALID_REQUEST,
    401: ExitCode.AUTH,
    403: ExitCode.AUTH,
    404: ExitCode.NOT_FOUND,
    409: ExitCode.CONFLICT,
    413: ExitCode.INVALID_REQUEST,
    422: ExitCode.INVALID_REQUEST,
    429: ExitCode.THROTTLED,
}


def exit_code_for_status(status_code: int) -> ExitCode:
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if 400 <= status_code < 500:
        return ExitCode.INVALID_REQUEST
    return ExitCode.SERVICE


class CliError(Exception):
    """A failure to report to the user: a message, the field at fault if any, and the exit code."""

    def __init__(
        self,
        exit_code: ExitCode,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.field = field
        self.code = code
        self.status_code = status_code

    def to_json(self) -> dict[str, object]:
        error: dict[str, object] = {"exit_code": int(self.exit_code), "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.field is not None:
            error["field"] = self.field
        if self.status_code is not None:
            error["status_code"] = self.status_code
        return {"error": error}

    def __str__(self) -> str:
        where = f" (field: {self.field})" if self.field else ""
        return f"{self.message}{where}"
