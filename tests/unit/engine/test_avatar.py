"""PreparedAvatar: ping-pong cycling (spec §7), byte round trip, format versioning."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from runtime.engine.avatar import PreparedAvatar
from runtime.engine.engine_contract import PreparedAvatarFormatError
from runtime.engine.options import AvatarOptions


def make_avatar(frames: int = 3) -> PreparedAvatar:
    rng = np.random.default_rng(0)
    has_face = np.array([i != 1 for i in range(frames)])
    return PreparedAvatar(
        frames=rng.integers(0, 256, (frames, 24, 20, 3), dtype=np.uint8),
        boxes=np.array([[2, 3, 12, 17]] * frames, dtype=np.int32),
        has_face=has_face,
        latents=rng.standard_normal((frames, 8, 32, 32)).astype(np.float32),
        masks=tuple(
            rng.integers(0, 256, (14, 10), dtype=np.uint8) if face else np.zeros((0, 0), np.uint8)
            for face in has_face
        ),
        fps=29.97,
        options=AvatarOptions(bbox_shift=-5, extra_margin=12, blend_mode="raw"),
        source_sha256="ab" * 32,
        model_version="musetalk-v1.5",
    )


def test_cycle_plays_forward_then_backward_repeating_the_ends() -> None:
    avatar = make_avatar(3)
    assert [avatar.cycle_index(i) for i in range(13)] == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0]


def test_a_still_image_cycles_on_its_one_frame() -> None:
    avatar = make_avatar(1)
    assert {avatar.cycle_index(i) for i in range(10)} == {0}


def test_round_trip_through_bytes_keeps_everything() -> None:
    avatar = make_avatar(3)
    restored = PreparedAvatar.from_bytes(avatar.to_bytes())
    assert np.array_equal(restored.frames, avatar.frames)
    assert np.array_equal(restored.boxes, avatar.boxes)
    assert np.array_equal(restored.has_face, avatar.has_face)
    assert np.array_equal(restored.latents, avatar.latents)
    assert len(restored.masks) == 3
    for ours, theirs in zip(restored.masks, avatar.masks, strict=True):
        assert np.array_equal(ours, theirs)
    assert (restored.fps, restored.options, restored.source_sha256, restored.model_version) == (
        avatar.fps,
        avatar.options,
        avatar.source_sha256,
        avatar.model_version,
    )


def test_nbytes_counts_the_arrays() -> None:
    avatar = make_avatar(3)
    assert avatar.nbytes >= avatar.frames.nbytes + avatar.latents.nbytes
    assert avatar.nbytes <= len(avatar.to_bytes())


def test_another_format_version_is_refused() -> None:
    data = make_avatar(1).to_bytes()
    with np.load(io.BytesIO(data)) as archive:
        arrays = dict(archive)
    header = json.loads(arrays["header"].tobytes())
    header["format_version"] = 999
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with pytest.raises(PreparedAvatarFormatError, match="999"):
        PreparedAvatar.from_bytes(buffer.getvalue())


def test_garbage_is_refused_without_unpickling() -> None:
    with pytest.raises(PreparedAvatarFormatError):
        PreparedAvatar.from_bytes(b"\x80\x04not an avatar")
