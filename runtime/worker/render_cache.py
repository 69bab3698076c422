"""The output cache of renders, and this worker's claim on the content it is rendering.

Equal content (same model, weights, inputs and options) renders to the same video, so a finished
render is kept under its content hash and copied to any later job's output key; while one job's
worker renders it, the claim (`render_claims`) makes other jobs with that content wait for it
instead of rendering it again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common.jobs import JobError, JobMessage
from runtime.engine.engine_contract import Interrupted, LipSyncEngine, Rendered
from runtime.worker.config import WorkerSettings
from runtime.worker.deadlines import deadline_passed
from runtime.worker.media_errors import MediaError
from runtime.worker.render_claims import Claim, ClaimFailed, ClaimHeld, RenderClaims
from runtime.worker.shutdown import StopPolicy
from runtime.worker.telemetry import logger


class ContentInProgress(Exception):
    """Another job's worker holds the render claim of this job's content."""

    def __init__(self, held: ClaimHeld) -> None:
        super().__init__(f"content claimed by job {held.job_id}")
        self.held = held


def render_cache_hash(
    *,
    engine: LipSyncEngine,
    avatar_sha256: str,
    audio_sha256: str,
    message: JobMessage,
    shared_across_tenants: bool = False,
) -> str:
    """The output depends on these and nothing else, so equal hashes mean equal videos. The
    tenant is part of the hash unless renders are shared across tenants: the output cache, the
    render claim and the media-error verdict are all keyed by it, and a shared one tells a tenant
    (by a fast hit or a shared failure) that another tenant rendered exactly this content."""
    basis = {
        "model_version": engine.model_version,
        "weights": engine.weights,
        "avatar": avatar_sha256,
        "avatar_options": message.avatar_options.model_dump(mode="json"),
        "audio": audio_sha256,
        "options": message.options.model_dump(mode="json"),
    }
    if not shared_across_tenants:
        basis["tenant"] = message.tenant
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def cache_metadata(rendered: Rendered) -> dict[str, str]:
    """S3 user metadata of a render: what a cache hit needs to report without the video."""
    metadata = {
        "frames": str(rendered.frames),
        "fps": str(rendered.fps),
        "weights": rendered.weights,
    }
    if rendered.sync_confidence is not None:
        metadata["sync-confidence"] = str(rendered.sync_confidence)
    return metadata


class RenderCache:
    """Cache look-ups and the content claim of the one render this worker runs at a time."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        s3: Any,
        claims: RenderClaims,
        stop: StopPolicy,
        owner: str,
    ) -> None:
        self._settings = settings
        self._s3 = s3
        self._claims = claims
        self._stop = stop
        self._owner = owner
        self._claim: Claim | None = None  # the content claim of the render in progress

    def cached_or_claimed(
        self, content_hash: str, cache_key: str, destination: str, message: JobMessage
    ) -> dict[str, str] | None:
        """The cached render's metadata (copied to `destination`), or None once this worker holds
        the content's claim and renders it. Raises `ContentInProgress` while another job's worker
        holds the claim, and the content's `MediaError` when that worker found it unusable."""
        cached = self._copy_cached(cache_key, destination)
        if cached is not None:
            return cached
        taken = self._claims.take(
            content_hash,
            owner=self._owner,
            job_id=message.job_id,
            lease_seconds=self._settings.visibility_timeout_seconds,
        )
        if isinstance(taken, ClaimFailed):
            raise MediaError(taken.error.code, taken.error.message)
        if isinstance(taken, ClaimHeld):
            raise ContentInProgress(taken)
        self._claim = taken
        # The previous holder may have cached it and let go between our two looks.
        return self._copy_cached(cache_key, destination)

    @contextmanager
    def claim_ended(self, message: JobMessage) -> Iterator[None]:
        """Ends the claim the render took however the render ends: a media error is kept as the
        content's verdict (jobs waiting for it fail at once); a stop request keeps it, so this
        job resumes from its own segments when it comes back (it may retake its own claim; the
        claim expires with its lease if it never does); anything else releases it (the render
        is cached, or another worker may try)."""
        verdict: JobError | None = None
        keep = False
        try:
            yield
        except MediaError as error:
            verdict = JobError(code=error.code, message=error.message)
            raise
        except Interrupted:
            keep = not deadline_passed(message.deadline_at)
            raise
        finally:
            claim, self._claim = self._claim, None
            if claim is not None and not keep:
                try:
                    if verdict is None:
                        self._claims.release(claim)
                    else:
                        self._claims.fail(claim, verdict)
                except (ClientError, BotoCoreError):
                    # Best effort: an unended claim only makes waiting jobs wait out its lease.
                    logger.warning("could not end the render claim; it expires with its lease")

    def extend_claim(self) -> None:
        """Keep the claim alive with the lease (called from the heartbeat); best effort."""
        claim = self._claim
        if claim is None:
            return
        try:
            seconds_left = self._stop.seconds_left_estimate()
            if not self._claims.extend(
                claim, self._settings.visibility_timeout_seconds, seconds_left
            ):
                logger.warning("render claim taken over; this render may be repeated elsewhere")
        except (ClientError, BotoCoreError):
            logger.warning("could not extend the render claim")

    def _copy_cached(self, cache_key: str, destination: str) -> dict[str, str] | None:
        """Copy a cached render to this job's output key; its metadata, or None on a miss."""
        bucket = self._settings.outputs_bucket
        try:
            head = self._s3.head_object(Bucket=bucket, Key=cache_key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        metadata: dict[str, str] = head.get("Metadata", {})
        if not all(name in metadata for name in ("frames", "fps", "weights")):
            return None  # not written by us (or by an older worker): render again
        self._s3.copy_object(
            Bucket=bucket, Key=destination, CopySource={"Bucket": bucket, "Key": cache_key}
        )
        return metadata
