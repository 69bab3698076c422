"""Opaque page tokens over the tenant index: newest first, and never a way into another tenant.

A token is the index's LastEvaluatedKey, base64url-encoded. On the way back in it must decode to a
key of the caller's own partition; anything else is a 400 naming `next_token`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from runtime.api.errors import invalid
from runtime.api.job_table import JobTable
from runtime.common.names import JobsTable

_KEY_FIELDS = frozenset(
    {
        JobsTable.PARTITION_KEY,
        JobsTable.TENANT_INDEX_PARTITION_KEY,
        JobsTable.TENANT_INDEX_SORT_KEY,
    }
)
MAX_TOKEN_LENGTH = 1024


def encode_token(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(last_key, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, *, partition: str, pk_prefix: str) -> dict[str, str]:
    def bad() -> Exception:
        return invalid("next_token", "next_token is not a token this API returned")

    if len(token) > MAX_TOKEN_LENGTH:
        raise bad()
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise bad() from error
    if (
        not isinstance(key, dict)
        or set(key) != _KEY_FIELDS
        or not all(isinstance(value, str) for value in key.values())
        or key[JobsTable.TENANT_INDEX_PARTITION_KEY] != partition
        or not key[JobsTable.PARTITION_KEY].startswith(pk_prefix)
    ):
        raise bad()
    return key


def query_tenant_index(
    table: JobTable,
    *,
    partition: str,
    pk_prefix: str,
    limit: int,
    next_token: str | None,
    filter_kwargs: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a tenant's items of one kind, newest first."""
    start_key = (
        decode_token(next_token, partition=partition, pk_prefix=pk_prefix) if next_token else None
    )
    items, last_key = table.tenant_page(
        partition, limit=limit, start_key=start_key, filter_kwargs=filter_kwargs
    )
    return items, encode_token(last_key)
