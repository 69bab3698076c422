"""The GPU-resident avatar and its batched blend (run on CPU here: CI has no GPU).

The batched blend must give exactly the bytes of the per-frame path (`paste_faces`), which
the blend tests check against the spec's cv2 + PIL reference.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from runtime.engine.avatar import PreparedAvatar
from runtime.engine.blend import PasteBox, paste_faces, scale_mask
from runtime.engine.options import MODEL_VERSION, AvatarOptions
from runtime.engine.resident import ResidentAvatar, ResidentCache

CPU = torch.device("cpu")
HEIGHT, WIDTH = 96, 80
# Boxes of different sizes: inside, past the right edge, past the bottom, odd sizes.
BOXES = [(10, 12, 50, 60), (40, 20, 95, 77), (5, 50, 44, 110), (0, 0, 37, 53), (21, 31, 64, 70)]


def avatar_with_boxes(seed: int, faceless: tuple[int, ...] = ()) -> PreparedAvatar:
    rng = np.random.default_rng(seed)
    count = len(BOXES)
    has_face = np.array([i not in faceless for i in range(count)])
    masks = tuple(
        rng.integers(0, 256, (y2 - y1, x2 - x1), dtype=np.uint8)
        if has_face[i]
        else np.zeros((0, 0), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(BOXES)
    )
    return PreparedAvatar(
        frames=rng.integers(0, 256, (count, HEIGHT, WIDTH, 3), dtype=np.uint8),
        boxes=np.array(BOXES, dtype=np.int32),
        has_face=has_face,
        latents=rng.standard_normal((count, 8, 32, 32)).astype(np.float32),
        masks=masks,
        fps=25.0,
        options=AvatarOptions(),
        source_sha256="0" * 64,
        model_version=MODEL_VERSION,
    )


def per_frame_blend(
    avatar: PreparedAvatar, faces: torch.Tensor, sources: list[int], weights: list[float]
) -> list[np.ndarray]:
    """What the engine did before: one region, mask and resize per frame."""
    regions, masks, boxes = [], [], []
    for source, weight in zip(sources, weights, strict=True):
        x1, y1, x2, y2 = (int(v) for v in avatar.boxes[source])
        box = PasteBox(x1, y1, x2, y2, frame_width=WIDTH, frame_height=HEIGHT)
        vx1, vy1, vx2, vy2 = box.visible
        regions.append(
            torch.from_numpy(np.ascontiguousarray(avatar.frames[source, vy1:vy2, vx1:vx2]))
        )
        mask = torch.from_numpy(avatar.masks[source])
        masks.append(scale_mask(mask, weight) if weight < 1.0 else mask)
        boxes.append(box)
    return [region.numpy() for region in paste_faces(faces, regions, masks, boxes)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_blend_equals_the_per_frame_blend_byte_for_byte(seed: int) -> None:
    # Given an avatar whose boxes differ in size and leave the frame, and a batch of faces
    # that repeats source frames and fades some masks (silence edges)
    avatar = avatar_with_boxes(seed, faceless=(4,))
    rng = np.random.default_rng(100 + seed)
    sources = [0, 1, 2, 3, 1, 0, 3]
    weights = [1.0, 0.5, 1.0, 0.25, 1.0, 0.8, 1.0]
    faces = torch.from_numpy(rng.integers(0, 256, (len(sources), 3, 256, 256), dtype=np.uint8))
    # When the resident avatar blends the whole batch at once
    resident = ResidentAvatar.build(avatar, CPU, torch.float32)
    index = torch.tensor(sources)
    batched = resident.blend(faces, index, torch.tensor(weights, dtype=torch.float32)).numpy()
    # Then each frame's visible region is exactly the per-frame result
    expected = per_frame_blend(avatar, faces, sources, weights)
    for k, source in enumerate(sources):
        height, width = resident.sizes[source]
        assert (height, width) == expected[k].shape[:2]
        assert np.array_equal(batched[k, :height, :width], expected[k]), f"frame {k}"


def test_resident_avatar_holds_latents_in_the_engine_dtype_and_no_face_frames_empty() -> None:
    # Given an avatar with a faceless frame
    avatar = avatar_with_boxes(3, faceless=(2,))
    # When it is made resident in fp16
    resident = ResidentAvatar.build(avatar, CPU, torch.float16)
    # Then the latents are the avatar's, cast; the faceless frame has no visible size
    assert resident.latents.dtype == torch.float16
    assert torch.allclose(resident.latents.float(), torch.from_numpy(avatar.latents), atol=1e-2)
    assert resident.sizes[2].tolist() == [0, 0]
    assert resident.sizes[1].tolist() == [77 - 20, WIDTH - 40]  # clipped at the right edge
    assert resident.nbytes > resident.regions.numel()


def test_cache_reuses_an_avatar_and_evicts_the_least_recently_used() -> None:
    # Given a cache of two avatars and three avatars
    cache = ResidentCache(CPU, torch.float32, max_avatars=2)
    first, second, third = (avatar_with_boxes(seed) for seed in (10, 11, 12))
    # When the first two are used, the first again, then the third
    resident = cache.get(first)
    cache.get(second)
    assert cache.get(first) is resident  # reused, not rebuilt
    cache.get(third)
    # Then the least recently used (second) went, the others stay
    assert first in cache
    assert third in cache
    assert second not in cache
    assert len(cache) == 2


def test_cache_bounded_by_bytes_keeps_at_least_the_newest() -> None:
    # Given a cache whose byte budget is smaller than one avatar
    avatar, other = avatar_with_boxes(20), avatar_with_boxes(21)
    cache = ResidentCache(CPU, torch.float32, max_bytes=1)
    # When two avatars are used in turn
    cache.get(avatar)
    cache.get(other)
    # Then only the newest is held (the job in hand needs it)
    assert other in cache
    assert avatar not in cache
    assert len(cache) == 1


def test_cache_lets_go_when_the_avatar_is_collected() -> None:
    # Given an avatar held by the cache
    cache = ResidentCache(CPU, torch.float32)
    avatar = avatar_with_boxes(30)
    cache.get(avatar)
    assert len(cache) == 1
    # When the caller drops the avatar (e.g. the worker's LRU evicts it)
    del avatar
    gc.collect()
    # Then its device tensors are released too
    assert len(cache) == 0
