"""An avatar is registered only from a file that can be one: not empty, and starting like the
MP4/QuickTime video or PNG/JPEG image it was uploaded as; otherwise 422 INVALID_MEDIA naming the
field (the code a job gets for undecodable media), and no avatar record exists."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import Call, Upload


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        ("image", b"", "empty (0 bytes)"),
        ("video", b"", "empty (0 bytes)"),
        ("image", b"GIF89a not a png or a jpeg", "not a PNG or JPEG image"),
        ("video", b"RIFF\x00\x00\x00\x00AVI LIST", "not an MP4 or QuickTime video"),
    ],
)
def test_an_unreadable_avatar_file_is_refused_and_not_registered(
    call_api: Call, upload: Upload, kind: str, data: bytes, reason: str
) -> None:
    refused = call_api("POST", "/v1/avatars", body={"upload_id": upload(kind, data)})
    assert refused["statusCode"] == 422, refused["json"]
    assert refused["json"]["error"]["code"] == "INVALID_MEDIA"
    assert refused["json"]["error"]["field"] == "upload_id"
    assert reason in refused["json"]["error"]["message"]
    assert call_api("GET", "/v1/avatars")["json"]["avatars"] == []


def test_a_real_image_and_a_real_video_are_registered(
    call_api: Call, upload: Upload, face_png: bytes
) -> None:
    mp4_head = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
    for kind, data in (("image", face_png), ("video", mp4_head)):
        created = call_api("POST", "/v1/avatars", body={"upload_id": upload(kind, data)})
        assert created["statusCode"] == 201, created["json"]
