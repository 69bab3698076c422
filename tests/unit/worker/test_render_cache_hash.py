"""The render content hash (output cache key, render claim, media-error verdict) is per tenant by
default, and the same across tenants only when renders are shared."""

from __future__ import annotations

from runtime.common.jobs import JobMessage, MediaRef, RenderOptions
from runtime.common.names import Lane
from runtime.worker.render_cache import render_cache_hash
from tests.support.small_engine import SmallEngine

AVATAR_SHA, AUDIO_SHA = "a" * 64, "b" * 64


def _message(tenant: str, job_id: str, **fields: object) -> JobMessage:
    return JobMessage.model_validate(
        {
            "job_id": job_id,
            "tenant": tenant,
            "lane": Lane.BATCH,
            "avatar_id": f"avatar-of-{tenant}",
            "avatar": MediaRef(bucket="uploads", key=f"tenants/{tenant}/uploads/1/data"),
            "audio": MediaRef(bucket="uploads", key=f"tenants/{tenant}/uploads/2/data"),
            "correlation_id": f"corr-{job_id}",
            "submitted_at": "2026-01-01T00:00:00.000Z",
            **fields,
        }
    )


def _hash(message: JobMessage, *, shared: bool = False) -> str:
    return render_cache_hash(
        engine=SmallEngine(),
        avatar_sha256=AVATAR_SHA,
        audio_sha256=AUDIO_SHA,
        message=message,
        shared_across_tenants=shared,
    )


def test_equal_content_of_two_tenants_hashes_apart_by_default_and_together_when_shared() -> None:
    # Given two tenants' jobs of the same avatar and audio bytes (other ids, keys, lanes)
    first, second = _message("tenant-a", "job-1"), _message("tenant-b", "job-2")
    # Then by default each tenant has its own hash, and one hash when shared across tenants
    assert _hash(first) != _hash(second)
    assert _hash(first, shared=True) == _hash(second, shared=True)
    # And within one tenant equal content hashes together whatever the job
    assert _hash(first) == _hash(_message("tenant-a", "job-3"))


def test_the_hash_still_follows_the_content_within_a_tenant() -> None:
    plain = _message("tenant-a", "job-1")
    other_options = _message("tenant-a", "job-2", options=RenderOptions(skip_silence=False))
    assert _hash(plain) != _hash(other_options)
