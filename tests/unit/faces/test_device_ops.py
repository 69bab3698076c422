"""The face models' pre/post-processing as batched tensor work (`device_ops`), checked on CPU
against the host path it replaces (OpenCV, PIL, mmpose's per-image pipeline), with the seeded
random full-size weights where a network is involved. Tolerances are stated per test."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from runtime.engine.cudnn import cudnn_benchmark
from runtime.engine.faces import mask_ops, mask_rules
from runtime.engine.faces.affine import warp_batch, warp_plan
from runtime.engine.faces.boxes import FaceBox
from runtime.engine.faces.dwpose import DWPose
from runtime.engine.faces.parsing import FaceParser
from runtime.engine.faces.s3fd import S3FD
from runtime.engine.options import BlendMode

CPU = torch.device("cpu")


def random_class_maps(count: int, seed: int = 0) -> np.ndarray:
    """Blocks of skin, nose, mouth, lips and neck on background: every mask rule has work."""
    rng = np.random.default_rng(seed)
    maps = np.zeros((count, 512, 512), np.uint8)
    for classes in maps:
        for _ in range(40):
            y, x = rng.integers(0, 512, 2)
            h, w = rng.integers(5, 120, 2)
            classes[y : y + h, x : x + w] = rng.choice([0, 1, 1, 1, 10, 11, 12, 13, 14])
    return maps


def test_given_the_whole_frame_crop_when_warped_in_a_batch_then_it_is_opencvs_warp() -> None:
    # Given a noisy frame and DWPose's whole-frame warp for 704x1216 (centre, scale 1140x1520)
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (1216, 704, 3), dtype=np.uint8)
    scale = 1140 / 288
    matrix = np.array([[1 / scale, 0, 144 - 352 / scale], [0, 1 / scale, 192 - 608 / scale]])
    # When warped as one gather, and by OpenCV
    plan = warp_plan(matrix, (1216, 704), (288, 384), CPU)
    ours = warp_batch(torch.from_numpy(np.stack([frame, frame])), plan)
    theirs = cv2.warpAffine(frame, matrix, (288, 384), flags=cv2.INTER_LINEAR)
    # Then both frames equal OpenCV's warp but for float rounding: at most one level, on at
    # most 0.2% of the values (OpenCV 5 also computes in float32, in another order)
    for warped in ours:
        diff = np.abs(warped.permute(1, 2, 0).numpy() - theirs.astype(np.float32))
        assert diff.max() <= 1
        assert (diff > 0).mean() < 0.002


def test_given_a_tilted_warp_that_leaves_the_frame_then_outside_is_black_as_opencv() -> None:
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    matrix = np.array([[0.9, 0.13, -20.3], [-0.11, 1.07, 5.7]])
    plan = warp_plan(matrix, (120, 90), (110, 140), CPU)
    ours = warp_batch(torch.from_numpy(frame[None]), plan)[0].permute(1, 2, 0).numpy()
    theirs = cv2.warpAffine(frame, matrix, (110, 140), flags=cv2.INTER_LINEAR)
    diff = np.abs(ours - theirs)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.002
    outside = (theirs == 0).all(axis=-1)
    assert outside.any()
    assert ours[outside].max() <= 1


@pytest.mark.parametrize("mode", ["jaw", "raw", "neck"])
def test_given_class_maps_when_region_masks_on_device_then_equal_to_opencv_rules(
    mode: BlendMode,
) -> None:
    # Given class maps with every class the rules look at
    maps = random_class_maps(3)
    # When masked as one batch of tensors
    ours = mask_ops.region_masks(torch.from_numpy(maps), mode).numpy()
    # Then the morphology (max-pools for OpenCV's dilate/erode) is exact: every pixel equal
    theirs = np.stack([mask_rules.region_mask(classes, mode) for classes in maps])
    assert np.array_equal(ours * 255, theirs)


def test_given_a_region_when_finished_on_device_then_within_two_levels_of_pil_and_opencv() -> None:
    # Given jaw regions and a paste box whose crop runs past the frame's top left
    box = FaceBox(200, 300, 420, 560)
    crop = mask_rules.crop_box(box)
    for classes in random_class_maps(2, seed=3):
        region = mask_rules.region_mask(classes, "jaw")
        for blur in ("offline", "realtime"):
            # When finished on the device and on the host (PIL bicubic, OpenCV blur)
            ours = mask_ops.finish_mask(
                torch.from_numpy(region > 0).float(), (200, 300, 420, 560), crop, blur
            ).numpy()
            theirs = mask_rules.finish_mask(region, box, crop, blur)
            # Then the fixed-point resize and blur differ by at most two levels, on few pixels
            diff = np.abs(ours.astype(int) - theirs)
            assert diff.max() <= 2
            assert diff.mean() < 0.1


def test_given_the_blur_matrix_then_it_is_opencvs_gaussian_with_reflect_101_borders() -> None:
    image = np.random.default_rng(4).random((57, 57)).astype(np.float32) * 255
    size = 13
    matrix = mask_ops._blur_matrix(57, size, CPU)
    ours = (matrix @ torch.from_numpy(image) @ matrix.T).numpy()
    theirs = cv2.GaussianBlur(image, (size, size), 0)
    assert np.abs(ours - theirs).max() < 1e-3


@pytest.mark.parametrize(
    "box", [(100, 200, 500, 600), (-50, -30, 300, 250), (500, 1000, 900, 1400)]
)
def test_given_a_crop_box_when_cropped_and_resized_on_device_then_within_one_level_of_pil(
    video_frames: list[np.ndarray], box: tuple[int, int, int, int]
) -> None:
    frame = video_frames[0]
    ours = mask_ops.pil_resize(
        mask_ops.crop_rgb_levels(torch.from_numpy(frame), box), (512, 512), "bilinear"
    )
    theirs = np.asarray(
        mask_rules.crop_rgb(frame, box).resize((512, 512), Image.Resampling.BILINEAR)
    ).astype(np.float32)
    diff = np.abs(ours.permute(1, 2, 0).numpy() - theirs)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.005


def test_given_random_dwpose_when_landmarks_on_device_then_equal_to_mmposes_pipeline(
    models_dir: Path, video_frames: list[np.ndarray]
) -> None:
    # Given the seeded random RTMPose-L (whole-body, flip test) on CPU and two sample frames
    model = DWPose.load(models_dir / "dwpose" / "dw-ll_ucoco_384.pth", CPU)
    frames = video_frames[:2]
    # When the landmarks come from mmpose's per-image pipeline and from the batched tensors
    theirs = model.face_landmarks(frames, batch_size=2)
    ours = model.face_landmarks_on_device(torch.from_numpy(np.stack(frames)), batch_size=2)
    # Then every landmark is the same pixel (same warp up to rare one-level roundings, same
    # network batch, same flip test and SimCC decoding in float32)
    assert ours.dtype == np.int32
    assert np.array_equal(ours, theirs)


def test_given_random_dwpose_when_crops_and_mirror_in_one_batch_then_landmarks_of_two_passes(
    models_dir: Path, video_frames: list[np.ndarray]
) -> None:
    # Given the seeded random RTMPose-L on CPU and two sample frames on the device
    model = DWPose.load(models_dir / "dwpose" / "dw-ll_ucoco_384.pth", CPU)
    frames = torch.from_numpy(np.stack(video_frames[:2]))
    # When the flip test runs the crops and their mirror as one batch, and as two passes
    model.flip_in_one_batch = True
    one_batch = model.face_landmarks_on_device(frames, batch_size=2)
    model.flip_in_one_batch = False
    two_passes = model.face_landmarks_on_device(frames, batch_size=2)
    # Then every landmark is the same pixel
    assert np.array_equal(one_batch, two_passes)


def test_given_random_s3fd_when_compiled_then_boxes_equal_the_eager_network(
    models_dir: Path, video_frames: list[np.ndarray]
) -> None:
    # Given the seeded random S3FD on CPU and two downscaled sample frames on the device
    detector = S3FD.load(models_dir / "s3fd" / "s3fd-619a316812.pth", CPU)
    small = torch.from_numpy(np.stack([frame[::4, ::4] for frame in video_frames[:2]]))
    eager = detector.detect_on_device(small, batch_size=2)
    # When its network runs through torch.compile (Dynamo's graph, run eagerly on CPU)
    detector.compile(backend="eager")
    compiled = detector.detect_on_device(small, batch_size=2)
    # Then it finds the same boxes, through the compiled network
    assert compiled == eager
    assert detector.run_net is not detector.net


def test_given_random_s3fd_when_detecting_on_device_then_boxes_equal_the_host_path(
    models_dir: Path, video_frames: list[np.ndarray]
) -> None:
    detector = S3FD.load(models_dir / "s3fd" / "s3fd-619a316812.pth", CPU)
    small = [np.ascontiguousarray(frame[::4, ::4]) for frame in video_frames[:2]]
    theirs = detector.detect(small)
    ours = detector.detect_on_device(torch.from_numpy(np.stack(small)), batch_size=1)
    assert ours == theirs
    assert all(box is not None for box in ours)


class ColourParts(torch.nn.Module):
    """A stand-in parser whose classes follow the colours (skin where red, lips where blue is
    high, nose on a band of green), so that every mask rule has regions to work on; random
    BiSeNet weights mostly predict no skin at all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 19, *x.shape[2:])
        logits[:, 0] = 0.3
        logits[:, mask_rules.SKIN] = x[:, 0]
        logits[:, 12] = x[:, 2] - 0.4
        logits[:, mask_rules.NOSE] = 1.5 - (x[:, 1] - 0.6).abs() * 8
        return logits


@pytest.mark.parametrize("mode", ["jaw", "raw"])
def test_given_a_parser_when_blending_on_device_then_masks_match_the_host_path(
    video_frames: list[np.ndarray], mode: BlendMode
) -> None:
    # Given a colour-following parser and two boxes on sample frames (one crop past the edge)
    parser = FaceParser(ColourParts(), CPU)  # type: ignore[arg-type]
    frames = video_frames[:2]
    boxes = [FaceBox(250, 300, 480, 560), FaceBox(560, 200, 700, 420)]
    # When blended from host frames and from one tensor of the frames
    theirs = parser.blend_masks(frames, boxes, mode=mode, batch_size=2)
    ours = parser.blend_masks(torch.from_numpy(np.stack(frames)), boxes, mode=mode, batch_size=2)
    # Then the crop boxes are the same and the masks, not empty, differ by a fraction of a
    # level on average and by a few levels at most (the resizes' and blur's rounding; a
    # one-level input difference can also flip a pixel's class where two logits tie)
    for a, b in zip(ours, theirs, strict=True):
        assert a.crop_box == b.crop_box
        assert a.mask.shape == b.mask.shape
        assert a.mask.dtype == np.uint8
        assert b.mask.mean() > 5
        diff = np.abs(a.mask.astype(int) - b.mask)
        assert diff.mean() < 0.5
        assert np.percentile(diff, 99) <= 2


def test_given_random_bisenet_when_parsing_on_device_then_classes_match_the_host_path(
    models_dir: Path, video_frames: list[np.ndarray]
) -> None:
    # Given the seeded random BiSeNet and the crop around a face box on a sample frame
    parser = FaceParser.load(models_dir, CPU)
    crop = mask_rules.crop_box(FaceBox(250, 300, 480, 560))
    frame = video_frames[0]
    # When parsed from the PIL crop and resize, and from the tensor crop and resize
    theirs = parser.parse([mask_rules.crop_rgb(frame, crop)], batch_size=1)
    levels = mask_ops.pil_resize(
        mask_ops.crop_rgb_levels(torch.from_numpy(frame), crop), (512, 512), "bilinear"
    )
    ours = parser._classes(levels[None]).numpy()
    # Then all but a few near-tied pixels get the same class
    assert (ours == theirs).mean() > 0.99


class BatchShapes(torch.nn.Module):
    """Records the batch size of every call of the module it wraps."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> object:
        self.batches.append(x.shape[0])
        return self.inner(x)


def test_given_the_autotuner_on_when_a_last_batch_is_short_then_it_is_padded_and_results_hold(
    models_dir: Path, video_frames: list[np.ndarray]
) -> None:
    # Given S3FD, DWPose and a parser whose networks record their batch sizes, two sample
    # frames and batches of three
    pose = DWPose.load(models_dir / "dwpose" / "dw-ll_ucoco_384.pth", CPU)
    plain_landmarks = pose.face_landmarks_on_device(
        torch.from_numpy(np.stack(video_frames[:2])), batch_size=3
    )
    pose.model.backbone = BatchShapes(pose.model.backbone)
    detector = S3FD.load(models_dir / "s3fd" / "s3fd-619a316812.pth", CPU)
    small = torch.from_numpy(np.stack([frame[::4, ::4] for frame in video_frames[:2]]))
    parser = FaceParser(BatchShapes(ColourParts()), CPU)  # type: ignore[arg-type]
    frames = torch.from_numpy(np.stack(video_frames[:2]))
    boxes = [FaceBox(250, 300, 480, 560), FaceBox(260, 310, 470, 550)]
    plain_boxes = detector.detect_on_device(small, batch_size=3)
    plain_masks = parser.blend_masks(frames, boxes, batch_size=3)
    detector.run_net = BatchShapes(detector.net)
    assert parser.net.batches == [2]
    parser.net.batches.clear()
    # When they run with cuDNN's autotuner on (as preparation on CUDA does)
    with cudnn_benchmark(True):
        padded_boxes = detector.detect_on_device(small, batch_size=3)
        padded_masks = parser.blend_masks(frames, boxes, batch_size=3)
        padded_landmarks = pose.face_landmarks_on_device(frames, batch_size=3)
    # Then every network call saw a full batch (DWPose's crops and their mirror: twice three),
    # and the real rows' results are unchanged
    assert pose.model.backbone.batches == [6]
    assert np.array_equal(padded_landmarks, plain_landmarks)
    assert detector.run_net.batches == [3]
    assert parser.net.batches == [3]
    assert padded_boxes == plain_boxes
    for a, b in zip(padded_masks, plain_masks, strict=True):
        assert np.array_equal(a.mask, b.mask)
