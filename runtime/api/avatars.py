"""Avatars: a face (video or image upload) plus preparation options, prepared once.

The avatar id hashes the tenant, the uploaded content (S3 ETag and size, read with HeadObject) and
the options, so the same face uploaded twice with the same options maps to the same avatar and the
worker's prepared-avatar cache is hit instead of preparing it again. The tenant is part of the
hash, so prepared data is never shared between tenants.
"""

from __future__ import annotations

import hashlib
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict

from runtime.api.context import ApiContext, iso
from runtime.api.errors import ApiError, ApiErrorCode, invalid, not_found
from runtime.api.job_table import avatar_pk
from runtime.api.media_signature import HEAD_BYTES, avatar_file_problem
from runtime.api.models import Avatar, AvatarList
from runtime.api.pagination import query_tenant_index
from runtime.api.uploads import get_upload, read_range, stored_object
from runtime.common.jobs import MODEL_VERSION, AvatarOptions, MediaRef
from runtime.common.keys import is_safe_id
from runtime.common.records import tenant_kind

AVATAR_KINDS = frozenset({"video", "image"})


class AvatarRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    avatar_id: str
    tenant: str
    upload_id: str  # the most recent upload of this content: the source the worker prepares from
    kind: str
    source: MediaRef
    source_bytes: int
    options: AvatarOptions
    created_at: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> AvatarRecord:
        plain = dict(item)
        plain["source_bytes"] = int(plain["source_bytes"])
        plain["options"] = {  # DynamoDB numbers come back as Decimal
            k: v if isinstance(v, str) else int(v) for k, v in item["options"].items()
        }
        return cls.model_validate(plain)

    def view(self) -> Avatar:
        return Avatar(
            avatar_id=self.avatar_id,
            upload_id=self.upload_id,
            kind=self.kind,
            options=self.options,
            created_at=self.created_at,
        )


def derive_avatar_id(tenant: str, etag: str, size: int, options: AvatarOptions) -> str:
    # The default mask blur is left out, so ids of avatars registered before the option
    # existed stay valid (their prepared copies used that blur).
    default_blur = options.mask_blur == AvatarOptions().mask_blur
    dumped = options.model_dump_json(exclude={"mask_blur"} if default_blur else None)
    material = "\n".join([MODEL_VERSION, tenant, etag, str(size), dumped]).encode()
    return "av_" + hashlib.sha256(material).hexdigest()[:40]


def register_avatar(
    ctx: ApiContext,
    tenant: str,
    upload_id: str,
    options: AvatarOptions,
    *,
    field: str = "upload_id",
) -> tuple[AvatarRecord, bool]:
    """Create (or refresh the source of) the avatar for this content + options.

    Returns the record and whether it is new. Re-registering points the avatar at the newest
    upload, so its source outlives the older upload's lifecycle expiry.
    """
    upload = get_upload(ctx, tenant, upload_id, field=field)
    if upload.kind not in AVATAR_KINDS:
        raise invalid(field, f"{field} must be a video or image upload, not {upload.kind}")
    stored = stored_object(ctx, upload, field=field)
    head = read_range(ctx, upload, 0, HEAD_BYTES) if stored.size else b""
    problem = avatar_file_problem(head, stored.size, upload.kind)
    if problem is not None:
        raise ApiError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            ApiErrorCode.INVALID_MEDIA,
            f"{field}: {problem}",
            field=field,
        )
    avatar_id = derive_avatar_id(tenant, stored.etag, stored.size, options)
    now = iso(ctx.now())
    item = ctx.table.put_avatar(
        tenant,
        avatar_id,
        {
            "upload_id": upload.upload_id,
            "kind": upload.kind,
            "source": upload.media.model_dump(exclude_none=True),
            "source_bytes": stored.size,
            "options": options.model_dump(),
        },
        now,
    )
    created = item["created_at"] == now
    return AvatarRecord.from_item(item), created


def get_avatar(ctx: ApiContext, tenant: str, avatar_id: str, *, field: str) -> AvatarRecord:
    if not is_safe_id(avatar_id):
        raise not_found("avatar", field)
    item = ctx.table.avatar_item(tenant, avatar_id)
    if item is None:
        raise not_found("avatar", field)
    return AvatarRecord.from_item(item)


def list_avatars(ctx: ApiContext, tenant: str, *, limit: int, next_token: str | None) -> AvatarList:
    items, token = query_tenant_index(
        ctx.table,
        partition=tenant_kind(tenant, "avatar"),
        pk_prefix=avatar_pk(tenant, ""),
        limit=limit,
        next_token=next_token,
    )
    return AvatarList(
        avatars=[AvatarRecord.from_item(item).view() for item in items], next_token=token
    )


def check_avatar_size(record: AvatarRecord, max_video: int, max_image: int) -> None:
    limit = max_video if record.kind == "video" else max_image
    if record.source_bytes > limit:
        raise ApiError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            ApiErrorCode.MEDIA_TOO_LARGE,
            f"the avatar's {record.kind} is larger than this lane allows ({limit} bytes)",
            field="avatar_id",
        )
