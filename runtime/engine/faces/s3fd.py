"""S3FD face detector: the face-alignment network and MuseTalk's detection rule (spec §3.2).

Parameter names equal those of `s3fd-619a316812.pth`, so the official file loads strictly.
Detection is batched: one forward pass for a batch of same-sized frames; the answer per frame
(the top-scoring cell, see `best_box`) is picked and decoded on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from runtime.engine.cudnn import cudnn_benchmark, padded_batch
from runtime.engine.faces.precision import check_face_dtype

# Per-channel values subtracted after the channel reversal (spec §3.2: RGB order, these values).
_PIXEL_MEAN = (104.0, 117.0, 123.0)
_KEEP_MIN_SCORE = 0.5
_VARIANCES = (0.1, 0.2)
# Head i sees stride 2**(i+2): 4, 8, ..., 128; its anchor side is 4 * stride.
_STRIDES = (4, 8, 16, 32, 64, 128)

DetectedBox = tuple[int, int, int, int]


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (`weight`)."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = 1e-10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In fp32 whatever the network's dtype: squares of VGG activations overflow fp16.
        x32 = x.float()
        norm = x32.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return (x32 / norm * self.weight.float().view(1, -1, 1, 1)).to(x.dtype)


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=kernel, stride=stride, padding=padding)


class S3FDNet(nn.Module):
    """VGG16 trunk, fc6/fc7 as convolutions, two extra stages and six (class, box) heads."""

    def __init__(self) -> None:
        super().__init__()
        vgg = [
            ("conv1", [3, 64, 64]),
            ("conv2", [64, 128, 128]),
            ("conv3", [128, 256, 256, 256]),
            ("conv4", [256, 512, 512, 512]),
            ("conv5", [512, 512, 512, 512]),
        ]
        for stage, channels in vgg:
            for i in range(1, len(channels)):
                self.add_module(f"{stage}_{i}", _conv(channels[i - 1], channels[i]))
        # padding=3 on a 3x3 kernel grows the map by 4; it is how the released model was trained.
        self.fc6 = _conv(512, 1024, padding=3)
        self.fc7 = _conv(1024, 1024, kernel=1, padding=0)
        self.conv6_1 = _conv(1024, 256, kernel=1, padding=0)
        self.conv6_2 = _conv(256, 512, stride=2)
        self.conv7_1 = _conv(512, 128, kernel=1, padding=0)
        self.conv7_2 = _conv(128, 256, stride=2)
        self.conv3_3_norm = L2Norm(256, scale=10)
        self.conv4_3_norm = L2Norm(512, scale=8)
        self.conv5_3_norm = L2Norm(512, scale=5)
        # The stride-4 head predicts 3 background logits + 1 face logit (max-out background).
        heads = [
            ("conv3_3_norm", 256, 4),
            ("conv4_3_norm", 512, 2),
            ("conv5_3_norm", 512, 2),
            ("fc7", 1024, 2),
            ("conv6_2", 512, 2),
            ("conv7_2", 256, 2),
        ]
        for name, cin, classes in heads:
            self.add_module(f"{name}_mbox_conf", _conv(cin, classes))
            self.add_module(f"{name}_mbox_loc", _conv(cin, 4))
        self._head_names = [name for name, _, _ in heads]

    def _stage(self, x: torch.Tensor, stage: str, layers: int) -> torch.Tensor:
        for i in range(1, layers + 1):
            x = F.relu(getattr(self, f"{stage}_{i}")(x), inplace=True)  # memory-bound: no copy
        return x

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Return per head (face probability [B,H,W], box regression [B,4,H,W]), in fp32 whatever
        the network's dtype, so that the top-score pick sees no extra ties from rounding."""
        h = F.max_pool2d(self._stage(x, "conv1", 2), 2, 2)
        h = F.max_pool2d(self._stage(h, "conv2", 2), 2, 2)
        f3 = self._stage(h, "conv3", 3)
        f4 = self._stage(F.max_pool2d(f3, 2, 2), "conv4", 3)
        f5 = self._stage(F.max_pool2d(f4, 2, 2), "conv5", 3)
        h = F.relu(self.fc6(F.max_pool2d(f5, 2, 2)), inplace=True)
        f7 = F.relu(self.fc7(h), inplace=True)
        f62 = F.relu(self.conv6_2(F.relu(self.conv6_1(f7), inplace=True)), inplace=True)
        f72 = F.relu(self.conv7_2(F.relu(self.conv7_1(f62), inplace=True)), inplace=True)
        features = [
            self.conv3_3_norm(f3),
            self.conv4_3_norm(f4),
            self.conv5_3_norm(f5),
            f7,
            f62,
            f72,
        ]
        outputs = []
        for name, feature in zip(self._head_names, features, strict=True):
            logits = getattr(self, f"{name}_mbox_conf")(feature).float()
            if logits.shape[1] == 4:
                background = logits[:, :3].amax(dim=1, keepdim=True)
                logits = torch.cat([background, logits[:, 3:]], dim=1)
            face_prob = F.softmax(logits, dim=1)[:, 1]
            outputs.append((face_prob, getattr(self, f"{name}_mbox_loc")(feature).float()))
        return outputs


Picks = tuple[torch.Tensor, torch.Tensor]  # each frame's top face score [B], its box [B, 4]


def normalized_input(frames: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 BGR [B, H, W, 3] -> the network's input: RGB minus the mean, NCHW, in `dtype`."""
    rgb = frames.flip(-1)
    mean = torch.tensor(_PIXEL_MEAN, device=frames.device)
    # NHWC memory viewed as NCHW is exactly the channels-last layout: no copy needed.
    return (rgb.to(torch.float32) - mean).permute(0, 3, 1, 2).to(dtype)


def decode_boxes(
    rows: torch.Tensor, cols: torch.Tensor, offsets: torch.Tensor, stride: int
) -> torch.Tensor:
    """Boxes [N,4] (x1,y1,x2,y2) of head cells: centre = prior + loc*0.1*anchor, size =
    anchor*exp(loc*0.2), the prior at the cell centre and the anchor 4 * stride (float32)."""
    anchor = float(stride * 4)
    cx = stride / 2 + cols.to(torch.float32) * stride
    cy = stride / 2 + rows.to(torch.float32) * stride
    centre_x = cx + offsets[:, 0] * _VARIANCES[0] * anchor
    centre_y = cy + offsets[:, 1] * _VARIANCES[0] * anchor
    width = anchor * torch.exp(offsets[:, 2] * _VARIANCES[1])
    height = anchor * torch.exp(offsets[:, 3] * _VARIANCES[1])
    x1 = centre_x - width / 2
    y1 = centre_y - height / 2
    return torch.stack([x1, y1, x1 + width, y1 + height], dim=1)


def strongest_cells(
    heads: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the top face score over all heads' cells and that cell's decoded box.

    This is all `best_box` needs (see there), computed where the heads are (the GPU) so only
    five numbers per frame come back to the host. Ties go to the first cell in head and
    row-major order, the order the reference detector lists its candidates in.
    """
    best_scores = best_boxes = None
    for (prob, loc), stride in zip(heads, _STRIDES, strict=True):
        flat = prob.flatten(1)  # [B, H*W]
        if flat.shape[1] == 0:  # a frame too small for this stride's head
            continue
        index = flat.argmax(dim=1)  # the first maximal cell
        scores = flat.gather(1, index[:, None])[:, 0]
        offsets = loc.flatten(2).gather(2, index[:, None, None].expand(-1, 4, 1))[..., 0]
        width = prob.shape[2]
        boxes = decode_boxes(index // width, index % width, offsets.float(), stride)
        if best_scores is None or best_boxes is None:
            best_scores, best_boxes = scores, boxes
            continue
        better = scores > best_scores  # strictly: an earlier head keeps a tie
        best_scores = torch.where(better, scores, best_scores)
        best_boxes = torch.where(better[:, None], boxes, best_boxes)
    if best_scores is None or best_boxes is None:  # no head has a cell: no face anywhere
        batch = heads[0][0].shape[0]
        return heads[0][0].new_zeros(batch), heads[0][0].new_zeros(batch, 4)
    return best_scores, best_boxes


def best_box(boxes: np.ndarray, scores: np.ndarray) -> DetectedBox | None:
    """The box the reference rule answers, clipped to >= 0 and truncated to int, or None.

    The reference runs greedy NMS (IoU 0.3, `+1` areas) over the candidates, keeps those with
    score > 0.5 and takes the first. Greedy NMS always keeps the top-scoring box first, so that
    answer is simply the top score, if it is over 0.5: no NMS needed. (With random weights tens
    of thousands of cells pass 0.5 and the NMS alone took 0.6 s per frame.) Exact ties for the
    top score go to the first candidate in head and row-major order; the reference's unstable
    sort may pick another of the tied cells.
    """
    strong = np.flatnonzero(scores > _KEEP_MIN_SCORE)
    if len(strong) == 0:
        return None
    first = strong[int(np.argmax(scores[strong]))]
    x1, y1, x2, y2 = np.clip(boxes[first], 0, None)
    return int(x1), int(y1), int(x2), int(y2)


class S3FD:
    """Batched S3FD detection on full-resolution BGR frames; one best face box or None each."""

    def __init__(
        self,
        net: S3FDNet,
        device: torch.device,
        *,
        max_batch: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """`max_batch` caps `detect`'s batch size; by default 1 on CPU (see `detect`). `dtype`:
        the network's (see `faces.precision`); the input and the answer pick stay fp32.

        Channels-last layout: about 20% less CPU time for this VGG trunk at full resolution.
        """
        self.dtype = check_face_dtype(dtype, device)
        self.net = net.to(device=device, dtype=dtype).to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
        self.device = device
        self.max_batch = (
            max_batch if max_batch is not None else (1 if device.type == "cpu" else None)
        )
        # The network as called: `net` itself, or its compiled form (`compile`).
        self.run_net: Callable[[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]] = self.net
        # `_strongest` from AOT packages, per input shape (`use_packaged`).
        self.packaged: dict[tuple[int, ...], Callable[[torch.Tensor], Picks]] = {}

    def use_packaged(self, shape: tuple[int, ...], pick: Callable[[torch.Tensor], Picks]) -> None:
        """Run `_strongest` for uint8 frames of exactly `shape` ([B, H, W, 3]) with `pick` (an
        AOT package of it, `aot_prepare`); other shapes stay with `run_net`."""
        self.packaged[tuple(shape)] = pick

    def compile(self, mode: str | None = None, backend: str = "inductor") -> None:
        """Run the network through `torch.compile` (static shapes: one avatar's frames share a
        size, and `detect_on_device` pads the last batch on CUDA, so one graph serves it).
        Inductor fuses the element-wise passes (bias, ReLU, the L2 norms, the heads' softmax)
        that the full-resolution trunk otherwise spends memory bandwidth on."""
        self.run_net = torch.compile(self.net, dynamic=False, mode=mode, backend=backend)

    @classmethod
    def load(
        cls, checkpoint: Path, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> S3FD:
        net = S3FDNet()
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        return cls(net, device, dtype=dtype)

    @torch.inference_mode()
    def detect(
        self, frames_bgr: Sequence[np.ndarray], batch_size: int = 8
    ) -> list[DetectedBox | None]:
        """Best face box per frame, or None.

        On CPU frames go one at a time by default whatever `batch_size` says: a convolution
        already uses every core, and a full-resolution batch of 8 needs gigabytes of activations.
        """
        if self.max_batch is not None:
            batch_size = min(batch_size, self.max_batch)
        results: list[DetectedBox | None] = []
        for start in range(0, len(frames_bgr), batch_size):
            batch = frames_bgr[start : start + batch_size]
            if len({frame.shape for frame in batch}) > 1:
                for frame in batch:  # mixed sizes cannot share a tensor; fall back to one by one
                    results.extend(self._detect_batch([frame]))
            else:
                results.extend(self._detect_batch(batch))
        return results

    @torch.inference_mode()
    def detect_on_device(
        self, frames: torch.Tensor, batch_size: int = 8
    ) -> list[DetectedBox | None]:
        """`detect` for uint8 [N, H, W, 3] BGR frames already on the network's device; one
        host sync for all of them (the five numbers per frame come back together)."""
        picks = []
        for start in range(0, len(frames), batch_size):
            part = frames[start : start + batch_size]
            scores, boxes = self._strongest(padded_batch(part, batch_size))
            picks.append((scores[: len(part)], boxes[: len(part)]))
        if not picks:
            return []
        scores_host = torch.cat([s for s, _ in picks]).cpu().numpy()
        boxes_host = torch.cat([b for _, b in picks]).cpu().numpy()
        return [best_box(boxes_host[i : i + 1], scores_host[i : i + 1]) for i in range(len(frames))]

    def _detect_batch(self, frames_bgr: Sequence[np.ndarray]) -> list[DetectedBox | None]:
        # Channels reversed on the device: the host only stacks the frames.
        scores, boxes = self._strongest(torch.from_numpy(np.stack(frames_bgr)).to(self.device))
        scores_host, boxes_host = scores.cpu().numpy(), boxes.cpu().numpy()
        return [
            best_box(boxes_host[b : b + 1], scores_host[b : b + 1]) for b in range(len(boxes_host))
        ]

    def _strongest(self, frames: torch.Tensor) -> Picks:
        """uint8 BGR [B, H, W, 3] on the device -> each frame's top score and its box."""
        if packaged := self.packaged.get(tuple(frames.shape)):
            return packaged(frames)
        x = normalized_input(frames, self.dtype)
        # Full-resolution frames of one avatar share a shape: let cuDNN pick its fastest
        # kernels for it (as the reference detector does, though it sets it process-wide).
        with cudnn_benchmark(self.device.type == "cuda"):
            return strongest_cells(self.run_net(x))
