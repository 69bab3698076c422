"""S3 key layout. Every personal object lives under its tenant's prefix, so tenant isolation is a
prefix check and erasure is a prefix delete."""

from __future__ import annotations

import re

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_safe_id(value: str) -> bool:
    """Ids used in keys: no slashes, dots or other path tricks."""
    return bool(_ID.fullmatch(value))


def tenant_prefix(tenant: str) -> str:
    if not is_safe_id(tenant):
        raise ValueError("tenant id must match [A-Za-z0-9_-]{1,64}")
    return f"tenants/{tenant}/"


def upload_key(tenant: str, upload_id: str, kind: str) -> str:
    if not is_safe_id(upload_id) or not is_safe_id(kind):
        raise ValueError("upload id and kind must match [A-Za-z0-9_-]{1,64}")
    return f"{tenant_prefix(tenant)}uploads/{upload_id}/{kind}"


UPLOAD_KEY_PATTERN = "tenants/*/uploads/*"  # IAM resource pattern of `upload_key`


def output_key(tenant: str, job_id: str) -> str:
    if not is_safe_id(job_id):
        raise ValueError("job id must match [A-Za-z0-9_-]{1,64}")
    return f"{tenant_prefix(tenant)}jobs/{job_id}/output.mp4"


OUTPUT_KEY_PATTERN = "tenants/*/jobs/*/output.mp4"  # IAM resource pattern of `output_key`


def job_segments_prefix(tenant: str, job_id: str) -> str:
    """Where a segmented render keeps its finished segments (and the preview playlist)."""
    if not is_safe_id(job_id):
        raise ValueError("job id must match [A-Za-z0-9_-]{1,64}")
    return f"{tenant_prefix(tenant)}jobs/{job_id}/segments/"


def segment_key(tenant: str, job_id: str, index: int) -> str:
    """`.../segments/00042.ts`: zero-padded, so keys list in play order."""
    if index < 0:
        raise ValueError("segment index must be non-negative")
    return f"{job_segments_prefix(tenant, job_id)}{index:05d}.ts"


def preview_playlist_key(tenant: str, job_id: str) -> str:
    """The live preview's HLS playlist, rewritten by the worker per segment and the API per read."""
    return f"{job_segments_prefix(tenant, job_id)}preview.m3u8"


# IAM resource patterns of the keys above (the worker and the dead-letter handler delete segments,
# the API writes playlists). In IAM `*` spans any characters, slashes included.
SEGMENT_KEY_PATTERN = "tenants/*/jobs/*/segments/*"
PREVIEW_PLAYLIST_KEY_PATTERN = "tenants/*/jobs/*/segments/preview.m3u8"


AVATAR_CACHE_PREFIX = "prepared/"
AVATAR_CACHE_KEY_PATTERN = f"{AVATAR_CACHE_PREFIX}*"  # what purge may delete in the avatar cache


def avatar_cache_key(model_version: str, avatar_id: str) -> str:
    """Prepared avatars are keyed by content + options (the avatar id) and model version."""
    if not is_safe_id(avatar_id):
        raise ValueError("avatar id must match [A-Za-z0-9_-]{1,64}")
    return f"{AVATAR_CACHE_PREFIX}{model_version}/{avatar_id}.bin"


RENDERED_CACHE_PREFIX = "rendered/"
RENDERED_CACHE_KEY_PATTERN = f"{RENDERED_CACHE_PREFIX}*"  # what purge may delete of the cache


def rendered_cache_key(model_version: str, content_hash: str) -> str:
    """Output cache: the same (model, avatar, audio, options) renders once, whoever asks."""
    if not is_safe_id(content_hash):
        raise ValueError("content hash must match [A-Za-z0-9_-]{1,64}")
    return f"{RENDERED_CACHE_PREFIX}{model_version}/{content_hash}.mp4"


AOT_ARTIFACTS_PREFIX = "aot-artifacts/"
AOT_ARTIFACTS_KEY_PATTERN = f"{AOT_ARTIFACTS_PREFIX}*"  # what the worker may write in weights


def aot_artifacts_prefix(model_version: str, key_digest: str) -> str:
    """Compiled-model packages in the weights bucket, one prefix per (card, torch, weights) key:
    the first worker of a combination builds and uploads, the others download."""
    if not is_safe_id(key_digest):
        raise ValueError("package key digest must match [A-Za-z0-9_-]{1,64}")
    return f"{AOT_ARTIFACTS_PREFIX}{model_version}/{key_digest}/"
