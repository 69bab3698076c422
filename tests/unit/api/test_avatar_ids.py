"""Avatar ids and stored avatar records across the preparation options."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from runtime.api.avatars import AvatarRecord, derive_avatar_id
from runtime.common.jobs import MODEL_VERSION, AvatarOptions


def test_default_options_keep_the_ids_avatars_had_before_the_mask_blur_option() -> None:
    # Given the id material as it was with four options (prepared with the offline blur)
    before = '{"bbox_shift":0,"extra_margin":10,"fps":25,"blend_mode":"jaw"}'
    material = "\n".join([MODEL_VERSION, "t", "etag", "12", before]).encode()
    expected = "av_" + hashlib.sha256(material).hexdigest()[:40]
    # Then default options (offline blur) still give that id, and the realtime blur another
    assert derive_avatar_id("t", "etag", 12, AvatarOptions()) == expected
    realtime = derive_avatar_id("t", "etag", 12, AvatarOptions(mask_blur="realtime"))
    assert realtime != expected


def test_a_stored_avatar_reads_back_its_mask_blur_and_numbers() -> None:
    # Given an avatar item as DynamoDB returns it (numbers as Decimal)
    item = {
        "avatar_id": "av_1",
        "tenant": "t",
        "upload_id": "up_1",
        "kind": "image",
        "source": {"bucket": "b", "key": "k"},
        "source_bytes": Decimal(12),
        "options": {
            "bbox_shift": Decimal(-3),
            "extra_margin": Decimal(10),
            "fps": Decimal(25),
            "blend_mode": "raw",
            "mask_blur": "realtime",
        },
        "created_at": "2026-12-06T00:00:00Z",
    }
    # Then the record has the options as they were registered
    options = AvatarRecord.from_item(item).options
    assert options == AvatarOptions(bbox_shift=-3, blend_mode="raw", mask_blur="realtime")
