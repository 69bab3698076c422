"""Blending against the spec's reference: cv2 bilinear resize, then PIL's masked paste (§6)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from runtime.engine.blend import PasteBox, blend_region, div255, paste_faces, resize_bilinear
from runtime.engine.frame_compose import mask_over_box
from tests.unit.engine.standins import Box, spec_crop_box


def reference_blend(
    frame: np.ndarray,
    face: np.ndarray,
    box: Box,
    crop_box: tuple[int, int, int, int],
    mask: np.ndarray,
) -> np.ndarray:
    """The official composite, written with the libraries the spec names."""
    resized = cv2.resize(face, (box.x2 - box.x1, box.y2 - box.y1))
    body = Image.fromarray(frame[:, :, ::-1])
    large = body.crop(crop_box)
    large.paste(Image.fromarray(resized[:, :, ::-1]), (box.x1 - crop_box[0], box.y1 - crop_box[1]))
    body.paste(large, crop_box[:2], Image.fromarray(mask))
    return np.array(body)[:, :, ::-1]


def our_blend(frame: np.ndarray, face: np.ndarray, box: Box, crop_box, mask) -> np.ndarray:
    height, width = frame.shape[:2]
    paste = PasteBox(box.x1, box.y1, box.x2, box.y2, frame_width=width, frame_height=height)
    vx1, vy1, vx2, vy2 = paste.visible
    faces = torch.from_numpy(face).permute(2, 0, 1)[None]
    region = torch.from_numpy(np.ascontiguousarray(frame[vy1:vy2, vx1:vx2]))
    box_mask = torch.from_numpy(mask_over_box(mask, crop_box, (box.x1, box.y1, box.x2, box.y2)))
    [blended] = paste_faces(faces, [region], [box_mask], [paste])
    out = frame.copy()
    out[vy1:vy2, vx1:vx2] = blended.numpy()
    return out


def synthetic_case(box: Box, size: tuple[int, int], seed: int):
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    # a smooth synthetic face: gradients, so the resize error stays at rounding level
    yy, xx = np.mgrid[0:256, 0:256]
    face = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.uint8)
    crop_box = spec_crop_box(box)
    side = crop_box[2] - crop_box[0]
    mask = rng.integers(0, 256, (side, side), dtype=np.uint8)
    mask[: side // 2] = 0  # the upper-boundary rule
    return frame, face, crop_box, mask


@pytest.mark.parametrize(
    ("box", "size"),
    [
        (Box(20, 30, 80, 100), (120, 100)),  # inside the frame
        (Box(50, 40, 118, 120), (120, 100)),  # past the right edge, down to the bottom
        (Box(0, 0, 37, 53), (64, 64)),  # odd sizes at the corner (crop box leaves the frame)
    ],
)
def test_blend_matches_the_official_composite_bit_for_bit(box: Box, size) -> None:
    # Given a frame, a generated face, a box and a mask over the spec's crop box
    frame, face, crop_box, mask = synthetic_case(box, size, seed=box.x1)
    # When we blend and the reference blends
    ours = our_blend(frame, face, box, crop_box, mask)
    expected = reference_blend(frame, face, box, crop_box, mask)
    # Then every pixel is identical, and the frame outside the box is untouched
    assert np.array_equal(ours, expected)
    outside = np.ones(size, dtype=bool)
    outside[box.y1 : box.y2, box.x1 : box.x2] = False
    assert np.array_equal(ours[outside], frame[outside])


@pytest.mark.parametrize(
    "size",
    [(171, 240), (97, 120), (63, 77), (256, 256), (255, 1), (300, 333), (200, 300), (512, 520)],
)
def test_resizing_a_face_to_its_box_equals_cv2_resize_exactly(size: tuple[int, int]) -> None:
    # Given a noisy 256x256 face (every rounding decision shows) and a box, smaller or larger
    face = np.random.default_rng(sum(size)).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    # When we resize it on the device and OpenCV resizes it (the official code's call)
    ours = resize_bilinear(torch.from_numpy(face).permute(2, 0, 1), *size).permute(1, 2, 0)
    # Then the results are identical, edges included
    assert np.array_equal(ours.numpy(), cv2.resize(face, size))


def test_full_mask_shows_the_face_and_zero_mask_the_frame() -> None:
    box = Box(10, 10, 42, 42)
    frame, face, crop_box, _ = synthetic_case(box, (64, 64), seed=3)
    side = crop_box[2] - crop_box[0]
    shown = our_blend(frame, face, box, crop_box, np.full((side, side), 255, np.uint8))
    hidden = our_blend(frame, face, box, crop_box, np.zeros((side, side), np.uint8))
    resized = cv2.resize(face, (32, 32))
    assert np.array_equal(shown[10:42, 10:42], resized)
    assert np.array_equal(hidden, frame)


def test_blend_is_bit_exact_with_pillow_for_every_value_pair() -> None:
    # Given every (frame, face) value pair and a few mask levels
    levels = np.arange(256, dtype=np.uint8)
    frame = np.repeat(levels[:, None], 256, axis=1)
    face = np.repeat(levels[None, :], 256, axis=0)
    for m in (0, 1, 77, 128, 254, 255):
        mask = np.full((256, 256), m, np.uint8)
        # When Pillow pastes with the mask and we blend
        body = Image.fromarray(frame)
        body.paste(Image.fromarray(face), (0, 0), Image.fromarray(mask))
        ours = blend_region(
            torch.from_numpy(frame)[..., None],
            torch.from_numpy(face)[..., None],
            torch.from_numpy(mask),
        )
        # Then the results are identical
        assert np.array_equal(ours[..., 0].numpy(), np.array(body)), f"mask level {m}"


def test_div255_rounds_to_nearest() -> None:
    x = torch.arange(255 * 255 + 1, dtype=torch.int32)
    expected = torch.from_numpy(np.floor(x.numpy() / 255 + 0.5).astype(np.int32))
    assert torch.equal(div255(x), expected)
