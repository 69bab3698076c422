"""The worker's permanent input failure: the job fails at once with the code, never a retry.

Raised by the worker's own input checks (`inputs`, `isolated`), by a content claim another worker
settled (`render_cache`), and for the engine's media failures and decoder refusals once
`engine_options` translated them into the job's error codes.
"""

from __future__ import annotations

from runtime.common.jobs import ErrorCode


class MediaError(Exception):
    """A job's input is unusable (missing, corrupt, past a limit, no face): retrying cannot help."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
