"""Job ids and request hashes: what makes "same key, same job" hold across retries and tenants."""

from __future__ import annotations

from runtime.api.jobs import derive_job_id, request_hash
from runtime.api.models import SubmitJobRequest
from runtime.common.keys import is_safe_id


def test_job_ids_are_per_tenant_and_key_and_safe_in_keys() -> None:
    job_id = derive_job_id("tenant-a", "order-1")
    assert job_id == derive_job_id("tenant-a", "order-1")
    assert job_id != derive_job_id("tenant-b", "order-1")
    assert job_id != derive_job_id("tenant-a", "order-2")
    assert is_safe_id(job_id)


def test_equal_bodies_hash_equal_whatever_their_spelling() -> None:
    explicit = SubmitJobRequest.model_validate(
        {"audio_upload_id": "a", "avatar_id": "v", "lane": "batch", "options": {}}
    )
    implicit = SubmitJobRequest.model_validate(
        {"lane": "batch", "avatar_id": "v", "audio_upload_id": "a"}
    )
    other = SubmitJobRequest.model_validate(
        {"lane": "interactive", "avatar_id": "v", "audio_upload_id": "a"}
    )
    assert request_hash(explicit) == request_hash(implicit)
    assert request_hash(explicit) != request_hash(other)
