"""BiSeNet layout and the blend-mask rules of spec §6."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from runtime.engine.faces.bisenet import BiSeNet, ResNet18
from runtime.engine.faces.boxes import FaceBox
from runtime.engine.faces.mask_rules import (
    blur_kernel_size,
    cheek_mask,
    crop_box,
    crop_rgb,
    finish_mask,
    jaw_dilation_kernel,
    jaw_erosion_kernel,
    region_mask,
)
from runtime.engine.faces.parsing import FaceParser

SKIN, NOSE, NECK, UPPER_LIP = 1, 10, 14, 12


def test_given_jaw_kernel_then_rows_are_as_the_spec_lists() -> None:
    k = jaw_dilation_kernel()
    assert k.shape == (33, 33)
    assert not k[:10].any()
    for row in range(10, 21):
        on = np.flatnonzero(k[row])
        assert (on[0], on[-1]) == (16 - (row - 10), 16 + (row - 10))
        assert len(on) == 2 * (row - 10) + 1
    for row in range(21, 33):
        assert np.flatnonzero(k[row]).tolist() == list(range(6, 27))


def test_given_erosion_kernel_then_it_is_the_middle_row_plus_centre_pixels() -> None:
    k = jaw_erosion_kernel()
    assert k.shape == (3, 35)
    assert k[1].all()
    assert np.flatnonzero(k[0]).tolist() == [17]
    assert np.flatnonzero(k[2]).tolist() == [17]


def test_given_cheek_mask_then_central_band_is_columns_167_to_345() -> None:
    q = cheek_mask()
    zero_columns = np.flatnonzero(q[0] == 0)
    assert (zero_columns[0], zero_columns[-1]) == (167, 345)
    assert (q[:, :167] == 255).all()
    assert (q[:, 346:] == 255).all()


def test_given_skin_block_when_jaw_mode_then_it_grows_up_in_the_centre_and_drops_the_nose() -> None:
    # Given a class map: a skin block (rows 200..299, columns 100..411), a nose patch and lips
    classes = np.zeros((512, 512), dtype=np.uint8)
    classes[200:300, 100:412] = SKIN
    classes[210:230, 250:262] = NOSE
    classes[400:410, 240:272] = UPPER_LIP
    # When
    mask = region_mask(classes, "jaw")
    # Then in the central band skin grew up to 16 px upward (row 184) but not 17
    assert mask[184, 256] == 255
    assert mask[183, 256] == 0
    # and the nose is excluded while the lips are included
    assert mask[220, 255] == 0
    assert (mask[400:410, 240:272] == 255).all()
    # and in the cheek strips the dilated skin is eroded (35x3 ellipse, twice): 2 px lower top,
    # and the block's own side edge (skin at column 110) pulled in by 2 x 17 - 10 px
    assert mask[185, 256] == 255
    assert mask[185, 140] == 0
    assert mask[250, 110] == 0
    assert mask[250, 130] == 255
    # and raw/neck modes are plain class unions
    assert region_mask(classes, "raw")[220, 255] == 0
    classes[450:460, 0:10] = NECK
    assert region_mask(classes, "neck")[455, 5] == 255
    assert region_mask(classes, "raw")[455, 5] == 0


@pytest.mark.parametrize(
    "box", [(10, 20, 70, 80), (-30, -10, 50, 60), (40, 50, 140, 150), (200, 200, 260, 260)]
)
def test_given_box_inside_across_or_outside_the_frame_when_cropped_then_it_equals_pil_crop(
    box: tuple[int, int, int, int],
) -> None:
    # Given a noisy BGR frame and a crop box (PIL fills what lies outside the frame with black)
    from PIL import Image

    frame = np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    expected = Image.fromarray(np.ascontiguousarray(frame[..., ::-1])).crop(box)
    # When cropped without copying the whole frame
    ours = crop_rgb(frame, box)
    # Then the image is the same, pixel for pixel
    assert ours.size == expected.size
    assert np.array_equal(np.asarray(ours), np.asarray(expected))


def test_given_2s_256_then_blur_kernels_are_13_offline_and_25_realtime() -> None:
    assert blur_kernel_size(256, "offline") == 13
    assert blur_kernel_size(256, "realtime") == 25


def test_given_face_box_when_expanded_then_crop_is_centred_square_of_1_5_half_side() -> None:
    # Given a 100 x 140 box: s = int(70 * 1.5) = 105 around the centre (150, 190)
    assert crop_box(FaceBox(100, 120, 200, 260)) == (45, 85, 255, 295)
    # odd sizes floor first: centre (150, 190), max(101, 141) // 2 = 70
    assert crop_box(FaceBox(100, 120, 201, 261)) == (45, 85, 255, 295)


def test_given_full_mask_when_finished_then_zero_above_centre_and_outside_box() -> None:
    # Given a parsing result that is 255 everywhere
    box = FaceBox(100, 120, 200, 260)
    c = crop_box(box)
    side = c[2] - c[0]
    # When
    mask = finish_mask(np.full((512, 512), 255, np.uint8), box, c, "realtime")
    # Then rows above the crop's middle are (before blur) zero: far above they stay zero
    k = blur_kernel_size(side, "realtime")
    assert mask.shape == (side, side)
    assert not mask[: side // 2 - k].any()
    # and left/right of the paste box too; inside the box's lower part it is solid
    left = box.x1 - c[0]
    assert not mask[:, : left - k].any()
    assert mask[side // 2 + k, left + k] == 255


class _AllSkin(BiSeNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 19, *x.shape[2:])
        logits[:, SKIN] = 1
        return logits


def test_given_parser_when_blending_then_masks_cover_lower_box_with_realtime_blur() -> None:
    # Given a parser that calls every pixel skin, and a box near the frame's top-left corner
    frame = np.zeros((300, 400, 3), np.uint8)
    box = FaceBox(10, 5, 90, 105)
    # When
    (blend,) = FaceParser(_AllSkin(), torch.device("cpu")).blend_masks([frame], [box], mode="raw")
    # Then the crop box may leave the frame, and the mask is the box's lower half, blurred
    # (centre (50, 55), s = int(100 // 2 * 1.5) = 75; the box spans x 35..115, y 25..125 in it)
    assert blend.crop_box == (-25, -20, 125, 130)
    assert blend.mask.shape == (150, 150)
    assert blend.mask.dtype == np.uint8
    assert blend.mask[110, 75] == 255
    assert blend.mask[40, 75] == 0
    assert blend.mask[110, 10] == 0


def test_given_random_weights_when_loaded_then_backbone_names_match_torchvision(
    models_dir: Path,
) -> None:
    # Given the torchvision-layout ResNet-18 file with its classifier
    state = torch.load(
        models_dir / "face-parse-bisent" / "resnet18-5c106cde.pth", weights_only=True
    )
    assert state["fc.weight"].shape == (1000, 512)
    assert set(ResNet18().state_dict()) == {k for k in state if not k.startswith("fc.")}
    # When the parser loads (backbone first, then 79999_iter.pth strictly)
    net = BiSeNet.load(
        models_dir / "face-parse-bisent" / "79999_iter.pth",
        models_dir / "face-parse-bisent" / "resnet18-5c106cde.pth",
    )
    # Then the 19-class fused output comes back at the input size
    with torch.inference_mode():
        assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 19, 64, 64)


@pytest.mark.parametrize("blur", ["offline", "realtime"])
def test_given_random_weights_when_masking_sample_frame_then_shapes_follow_the_box(
    models_dir: Path, video_frames: list[np.ndarray], cpu: torch.device, blur: str
) -> None:
    parser = FaceParser.load(models_dir, cpu)
    boxes = [FaceBox(500, 200, 700, 450), FaceBox(510, 210, 690, 440)]
    masks = parser.blend_masks(video_frames[:2], boxes, blur=blur, batch_size=2)  # type: ignore[arg-type]
    for blend, box in zip(masks, boxes, strict=True):
        assert blend.crop_box == crop_box(box)
        side = blend.crop_box[2] - blend.crop_box[0]
        assert blend.mask.shape == (side, side)
        assert not blend.mask[: side // 2 - blur_kernel_size(side, blur)].any()  # type: ignore[arg-type]


def test_given_opencv_dilation_then_kernel_grows_skin_16_up_and_6_down() -> None:
    dot = np.zeros((64, 64), np.uint8)
    dot[32, 32] = 255
    grown = np.flatnonzero(cv2.dilate(dot, jaw_dilation_kernel())[:, 32])
    assert (grown[0], grown[-1]) == (32 - 16, 32 + 6)
