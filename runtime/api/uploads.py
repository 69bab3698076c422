"""Uploads: a presigned POST per kind into the tenant's prefix, and checks of what arrived.

The POST policy pins the exact key, the content type and a byte range, and expires quickly, so the
form cannot be reused to write anything else. Whether the object arrived (and how big it is) is
read back with HeadObject when an avatar or job references the upload.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from runtime.api.context import ApiContext, iso
from runtime.api.errors import ApiError, ApiErrorCode, invalid, not_found
from runtime.api.job_table import upload_pk
from runtime.api.models import CONTENT_TYPES, CreateUploadRequest, PresignedPost, UploadCreated
from runtime.api.observability import logger
from runtime.common.jobs import MediaRef
from runtime.common.keys import is_safe_id, upload_key
from runtime.common.names import JobsTable
from runtime.common.records import tenant_kind


class UploadRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    upload_id: str
    tenant: str
    kind: str
    content_type: str
    bucket: str
    key: str
    max_bytes: int
    created_at: str
    expires_at: int  # DynamoDB TTL (epoch seconds)

    def to_item(self) -> dict[str, Any]:
        item = self.model_dump()
        item[JobsTable.PARTITION_KEY] = upload_pk(self.tenant, self.upload_id)
        item[JobsTable.TENANT_INDEX_PARTITION_KEY] = tenant_kind(self.tenant, "upload")
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> UploadRecord:
        return cls.model_validate({k: int(v) if k in _INTS else v for k, v in item.items()})

    @property
    def media(self) -> MediaRef:
        return MediaRef(bucket=self.bucket, key=self.key)


_INTS = frozenset({"max_bytes", "expires_at"})


@dataclass(frozen=True)
class StoredObject:
    size: int
    etag: str


def max_bytes_for(ctx: ApiContext, kind: str) -> int:
    """The lane is not known at upload time: allow the largest lane's limit; jobs re-check."""
    lanes = ctx.settings.limits.lanes.values()
    if kind == "audio":
        return max(lane.max_audio_bytes for lane in lanes)
    if kind == "video":
        return max(lane.max_video_bytes for lane in lanes)
    return max(lane.max_image_bytes for lane in lanes)


def create_upload(ctx: ApiContext, tenant: str, request: CreateUploadRequest) -> UploadCreated:
    allowed = CONTENT_TYPES[request.kind]
    content_type = request.content_type or allowed[0]
    if content_type not in allowed:
        raise invalid("content_type", f"content_type for {request.kind} must be one of {allowed}")
    now = ctx.now()
    upload_id = secrets.token_hex(16)
    limits = ctx.settings.limits
    expiry = limits.upload_url_expiry_seconds
    record = UploadRecord(
        upload_id=upload_id,
        tenant=tenant,
        kind=request.kind,
        content_type=content_type,
        bucket=ctx.settings.uploads_bucket,
        key=upload_key(tenant, upload_id, request.kind),
        max_bytes=max_bytes_for(ctx, request.kind),
        created_at=iso(now),
        expires_at=int((now + timedelta(days=ctx.settings.job_record_ttl_days)).timestamp()),
    )
    ctx.table.create_upload(record.to_item())
    post = ctx.s3.generate_presigned_post(
        Bucket=record.bucket,
        Key=record.key,
        Fields={"Content-Type": content_type},
        Conditions=[
            {"Content-Type": content_type},
            ["content-length-range", 1, record.max_bytes],
        ],
        ExpiresIn=expiry,
    )
    return UploadCreated(
        upload_id=upload_id,
        kind=request.kind,
        content_type=content_type,
        max_bytes=record.max_bytes,
        expires_at=iso(now + timedelta(seconds=expiry)),
        upload=PresignedPost(url=post["url"], fields=post["fields"]),
    )


def get_upload(ctx: ApiContext, tenant: str, upload_id: str, *, field: str) -> UploadRecord:
    """The tenant's upload, or 404 naming `field` (another tenant's upload is 'not found')."""
    if not is_safe_id(upload_id):
        raise invalid(field, f"{field} must match [A-Za-z0-9_-]{{1,64}}")
    item = ctx.table.upload_item(tenant, upload_id)
    if item is None:
        raise not_found("upload", field)
    return UploadRecord.from_item(item)


def stored_object(ctx: ApiContext, upload: UploadRecord, *, field: str) -> StoredObject:
    """HeadObject of the uploaded file: it must have arrived before anything references it."""
    try:
        head = ctx.s3.head_object(Bucket=upload.bucket, Key=upload.key)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code == "403":
            # S3 answers 403 for a missing key when the caller may not list the bucket: grant the
            # API s3:ListBucket on the uploads bucket so this stays a 404.
            logger.warning("HeadObject forbidden; treating the upload as not received")
        if code in {"403", "404", "NoSuchKey", "NotFound"}:
            raise ApiError(
                HTTPStatus.CONFLICT,
                ApiErrorCode.UPLOAD_NOT_RECEIVED,
                "the file for this upload has not been received yet; POST it to the upload form",
                field=field,
            ) from error
        raise
    return StoredObject(size=int(head["ContentLength"]), etag=str(head["ETag"]).strip('"'))


def read_range(ctx: ApiContext, upload: UploadRecord, start: int, length: int) -> bytes:
    if length <= 0:
        return b""
    response = ctx.s3.get_object(
        Bucket=upload.bucket, Key=upload.key, Range=f"bytes={start}-{start + length - 1}"
    )
    return bytes(response["Body"].read())
