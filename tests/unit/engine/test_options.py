"""The engine's own options: validated where the engine cannot work with a value."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.engine.options import AvatarOptions, RenderOptions


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"fps": 0}, "fps"),
        ({"extra_margin": -1}, "extra_margin"),
        ({"bbox_shift": 1.5}, "bbox_shift"),
        ({"fps": True}, "fps"),
        ({"blend_mode": "chin"}, "blend_mode"),
        ({"mask_blur": "gaussian"}, "mask_blur"),
    ],
)
def test_an_unusable_avatar_option_is_refused_by_name(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        AvatarOptions(**fields)


def test_a_sync_threshold_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="sync_threshold"):
        RenderOptions(sync_threshold=1.5)


def test_options_round_trip_through_their_json() -> None:
    options = AvatarOptions(
        bbox_shift=-3, extra_margin=20, fps=30, blend_mode="neck", mask_blur="realtime"
    )
    assert AvatarOptions.from_json(options.to_json()) == options


def test_a_header_with_an_option_this_engine_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown avatar options"):
        AvatarOptions.from_json({"bbox_shift": 0, "lip_gain": 2})
