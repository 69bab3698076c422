"""Page tokens round-trip and cannot be pointed at another tenant's partition."""

from __future__ import annotations

import base64
import json

import pytest

from runtime.api.errors import ApiError
from runtime.api.pagination import decode_token, encode_token

KEY = {"pk": "JOB#job_1", "tenant_kind": "tenant-a#job", "created_at": "2026-11-26T11:00:00Z"}


def test_a_token_round_trips() -> None:
    token = encode_token(KEY)
    assert token is not None
    assert decode_token(token, partition="tenant-a#job", pk_prefix="JOB#") == KEY


def test_no_last_key_means_no_token() -> None:
    assert encode_token(None) is None
    assert encode_token({}) is None


def _token(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        _token({**KEY, "tenant_kind": "tenant-b#job"}),
        _token({**KEY, "pk": "AVATAR#tenant-a#x"}),
        _token({**KEY, "extra": "x"}),
        _token({**KEY, "created_at": 5}),
        _token([1, 2]),
        "not base64 !!",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * 2000,
    ],
)
def test_foreign_or_forged_tokens_are_400_on_next_token(token: str) -> None:
    with pytest.raises(ApiError) as refused:
        decode_token(token, partition="tenant-a#job", pk_prefix="JOB#")
    assert (refused.value.status, refused.value.field) == (400, "next_token")
