"""S3FD network layout and the detection rule of spec §3.2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine.faces.s3fd import S3FD, S3FDNet, best_box, decode_boxes, strongest_cells

STRIDES = (4, 8, 16, 32, 64, 128)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3) -> list[int]:
    """The reference detector's greedy NMS (`+1` areas, best score first), as spec §3.2 says."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou]
    return keep


def test_given_network_when_listing_parameters_then_names_and_shapes_match_the_release() -> None:
    # Given the face-alignment S3FD layout
    state = S3FDNet().state_dict()
    # Then the tensors the official checkpoint holds are all present with their shapes
    assert len(state) == 65  # 19 convs x (weight, bias) + 3 L2Norm scales + 12 heads x 2
    assert state["conv3_3_norm.weight"].shape == (256,)
    assert torch.all(state["conv4_3_norm.weight"] == 8)
    assert state["fc6.weight"].shape == (1024, 512, 3, 3)
    assert state["conv3_3_norm_mbox_conf.weight"].shape == (4, 256, 3, 3)
    assert state["conv7_2_mbox_loc.weight"].shape == (4, 256, 3, 3)


def test_given_frame_when_run_then_heads_have_strides_4_to_128() -> None:
    # Given a 256x256 input
    with torch.inference_mode():
        heads = S3FDNet()(torch.zeros(1, 3, 256, 256))
    # Then the first three heads are at strides 4, 8, 16; fc6's padding of 3 grows the rest
    sizes = [prob.shape[-1] for prob, _ in heads]
    assert sizes == [64, 32, 16, 12, 6, 3]
    assert all(loc.shape[1] == 4 for _, loc in heads)


def test_given_one_cell_when_decoded_then_box_is_the_offset_anchor() -> None:
    # Given a stride-8 cell (row 2, col 3) with known offsets
    offsets = torch.tensor([[1.0, -0.5, 0.0, np.log(2) / 0.2]])
    # When
    boxes = decode_boxes(torch.tensor([2]), torch.tensor([3]), offsets, stride=8).numpy()
    # Then centre = prior + loc*0.1*anchor, size = anchor*exp(loc*0.2), anchor = 32
    cx, cy = 4 + 3 * 8 + 1.0 * 0.1 * 32, 4 + 2 * 8 - 0.5 * 0.1 * 32
    np.testing.assert_allclose(boxes[0], [cx - 16, cy - 32, cx + 16, cy + 32], rtol=1e-5)


def reference_detection(heads: list[tuple[torch.Tensor, torch.Tensor]], b: int) -> object:
    """Spec §3.2 as the reference detector does it: every cell with p > 0.05 decoded, greedy
    NMS at 0.3, keep > 0.5, take the first, clip at 0, int()."""
    boxes, scores = [], []
    for (prob, loc), stride in zip(heads, STRIDES, strict=True):
        rows, cols = torch.nonzero(prob[b] > 0.05, as_tuple=True)
        boxes.append(decode_boxes(rows, cols, loc[b][:, rows, cols].T, stride).numpy())
        scores.append(prob[b][rows, cols].numpy())
    all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
    kept = [i for i in nms(all_boxes, all_scores) if all_scores[i] > 0.5]
    if not kept:
        return None
    x1, y1, x2, y2 = np.clip(all_boxes[kept[0]], 0, None)
    return int(x1), int(y1), int(x2), int(y2)


@pytest.mark.parametrize("seed", range(4))
def test_given_random_heads_when_strongest_cells_then_answer_equals_the_reference_rule(
    seed: int,
) -> None:
    # Given random heads of a 128x96 frame pair: many cells over 0.05 and over 0.5 (as random
    # weights give), the second image below 0.5 everywhere but one cell on the stride-16 head
    gen = torch.Generator().manual_seed(seed)
    heads = []
    for stride in STRIDES:
        h, w = max(128 // stride, 1), max(96 // stride, 1)
        prob = torch.rand(2, h, w, generator=gen)
        prob[1] *= 0.5
        heads.append((prob, torch.randn(2, 4, h, w, generator=gen)))
    heads[2][0][1, 3, 2] = 0.75
    # When the device path picks and decodes one cell per image
    scores, boxes = strongest_cells(heads)
    ours = [best_box(boxes[b : b + 1].numpy(), scores[b : b + 1].numpy()) for b in range(2)]
    # Then each answer is the reference rule's
    assert ours == [reference_detection(heads, 0), reference_detection(heads, 1)]


def test_given_tied_top_scores_when_strongest_cells_then_first_head_and_cell_wins() -> None:
    heads = [(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4, 4)) for _ in STRIDES]
    heads[1][0][0, 2, 1] = 0.9  # stride 8
    heads[1][0][0, 3, 3] = 0.9  # same score, later cell
    heads[3][0][0, 0, 0] = 0.9  # same score, later head
    scores, boxes = strongest_cells(heads)
    expected = decode_boxes(torch.tensor([2]), torch.tensor([1]), torch.zeros(1, 4), 8)
    assert torch.equal(boxes, expected)
    assert float(scores[0]) == pytest.approx(0.9)


def test_given_overlapping_boxes_when_reference_nms_then_plus_one_areas_decide_it() -> None:
    # Given two 10x10 (+1 -> 11x11) boxes; with +1 areas IoU is 66/176 = 0.375 > 0.3
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [40, 40, 50, 50]], dtype=np.float32)
    scores = np.array([0.9, 0.95, 0.6], dtype=np.float32)
    # When / Then the weaker overlapping box is dropped, the distant one kept, best first
    assert nms(boxes, scores) == [1, 2]
    # Given a shift that gives IoU = 44/198 = 0.22 with +1 areas (0.25 without them), both stay
    boxes[1] = [7, 0, 17, 10]
    assert nms(boxes, scores) == [1, 0, 2]


@pytest.mark.parametrize("seed", range(5))
def test_given_many_candidates_when_best_box_then_it_is_the_reference_rules_answer(
    seed: int,
) -> None:
    # Given thousands of overlapping candidates, scores spread over 0.05..1 (random weights)
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 300, (3000, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(8, 120, (3000, 2))], axis=1)
    scores = rng.uniform(0.05, 1.0, 3000).astype(np.float32)
    # When the reference rule runs: NMS at 0.3, keep > 0.5, take the first
    kept = [i for i in nms(boxes, scores) if scores[i] > 0.5]
    x1, y1, x2, y2 = np.clip(boxes[kept[0]], 0, None)
    # Then best_box (no NMS) gives the same box
    assert best_box(boxes, scores) == (int(x1), int(y1), int(x2), int(y2))


def test_given_candidates_when_best_box_then_top_score_above_half_is_clipped_and_truncated() -> (
    None
):
    boxes = np.array([[-3.7, 5.9, 20.2, 30.8], [0, 0, 50, 50]], dtype=np.float32)
    assert best_box(boxes, np.array([0.8, 0.6], dtype=np.float32)) == (0, 5, 20, 30)
    assert best_box(boxes, np.array([0.5, 0.3], dtype=np.float32)) is None


class _RecordingNet(S3FDNet):
    """Records the network input and answers 'no face' everywhere."""

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        self.seen = x.clone()
        b, _, h, w = x.shape
        return [
            (torch.zeros(b, h // s, w // s), torch.zeros(b, 4, h // s, w // s))
            for s in (4, 8, 16, 32, 64, 128)
        ]


def test_given_bgr_frame_when_detected_then_input_is_rgb_minus_104_117_123() -> None:
    # Given a frame whose B, G, R planes are 10, 20, 30
    frame = np.zeros((128, 256, 3), dtype=np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 30
    net = _RecordingNet()
    # When
    result = S3FD(net, torch.device("cpu"), max_batch=2).detect([frame, frame], batch_size=2)
    # Then the channels are reversed before the per-channel subtraction, NCHW float32, batched
    assert net.seen.shape == (2, 3, 128, 256)
    assert net.seen[0, :, 0, 0].tolist() == [30 - 104, 20 - 117, 10 - 123]
    assert result == [None, None]


def test_given_random_weights_when_detecting_sample_media_then_a_box_lies_on_the_frame(
    models_dir: Path, video_frames: list[np.ndarray], cpu: torch.device
) -> None:
    # Given the seeded random checkpoint and a quarter-size frame (full size costs seconds)
    detector = S3FD.load(models_dir / "s3fd" / "s3fd-619a316812.pth", cpu)
    small = np.ascontiguousarray(video_frames[0][::4, ::4])
    # When
    (box,) = detector.detect([small])
    # Then some box is found and it starts inside the frame
    assert box is not None
    x1, y1, x2, y2 = box
    assert 0 <= x1 < x2
    assert 0 <= y1 < y2
    assert x1 < small.shape[1]
    assert y1 < small.shape[0]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_given_mixed_frame_sizes_when_batched_then_each_frame_gets_an_answer(
    batch_size: int,
) -> None:
    frames = [
        np.zeros((32, 32, 3), np.uint8),
        np.zeros((48, 40, 3), np.uint8),
        np.zeros((32, 32, 3), np.uint8),
    ]
    net = _RecordingNet()
    detector = S3FD(net, torch.device("cpu"), max_batch=batch_size)
    assert detector.detect(frames, batch_size=batch_size) == [None] * 3


def test_given_cpu_when_detecting_then_frames_go_one_at_a_time_by_default() -> None:
    net = _RecordingNet()
    S3FD(net, torch.device("cpu")).detect([np.zeros((128, 128, 3), np.uint8)] * 2, batch_size=8)
    assert net.seen.shape[0] == 1
