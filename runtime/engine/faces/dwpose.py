"""DWPose whole-body landmarks through mmpose, as MuseTalk uses them (spec §1 "DWPose", §3.1).

The model is the official RTMPose-L whole-body 384x288 config, rebuilt here as a dict from the
spec's facts (CSPNeXt-P5 backbone, RTMCC head with 133 outputs, SimCC codec, flip test). It runs
`mmpose.apis.init_model` and the same per-image steps as `inference_topdown` with no person box
(the whole frame is the box), batched over frames; the 68 face points are keypoints 23..90.
"""

from __future__ import annotations

import importlib.util
import logging
import pickle  # nosec B403 (see _load_checkpoint: trusted weights only)
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.engine.cudnn import padded_batch
from runtime.engine.faces.affine import WarpPlan, warp_batch, warp_plan
from runtime.engine.faces.mmlab_compat import import_mmpose
from runtime.engine.faces.precision import check_face_dtype
from runtime.engine.hostpool import host_map

logger = logging.getLogger(__name__)

FACE_KEYPOINTS = slice(23, 91)  # iBUG-68 order inside the 133 COCO-WholeBody keypoints
_CODEC: dict[str, Any] = {
    "type": "SimCCLabel",
    "input_size": (288, 384),
    "sigma": (6.0, 6.93),
    "simcc_split_ratio": 2.0,
    "normalize": False,
    "use_dark": False,
}
_WHOLEBODY_META_FILE = "configs/_base_/datasets/coco_wholebody.py"  # flip pairs of the 133 points


def _wholebody_meta() -> dict[str, str]:
    """mmpose ships its dataset configs under `.mim/`; naming the file there directly avoids
    the warning mmpose gives when it has to look for the relative name itself."""
    spec = importlib.util.find_spec("mmpose")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / ".mim" / _WHOLEBODY_META_FILE
        if shipped.exists():
            return {"from_file": str(shipped)}
    return {"from_file": _WHOLEBODY_META_FILE}


def rtmpose_wholebody_config() -> dict[str, Any]:
    """The official `rtmpose-l_8xb32-270e_coco-ubody-wholebody-384x288` inference settings.

    The backbone's `_scope_='mmdet'` is left out: mmpose >= 1.2 has its own CSPNeXt with the same
    parameter names, and leaving mmdet out avoids its compiled-ops import.
    """
    pipeline = [
        {"type": "LoadImage"},
        {"type": "GetBBoxCenterScale"},  # padding 1.25
        {"type": "TopdownAffine", "input_size": _CODEC["input_size"]},
        {"type": "PackPoseInputs"},
    ]
    metainfo = _wholebody_meta()
    return {
        "default_scope": "mmpose",
        "model": {
            "type": "TopdownPoseEstimator",
            "data_preprocessor": {
                "type": "PoseDataPreprocessor",
                "mean": [123.675, 116.28, 103.53],
                "std": [58.395, 57.12, 57.375],
                "bgr_to_rgb": True,
            },
            "backbone": {
                "type": "CSPNeXt",
                "arch": "P5",
                "expand_ratio": 0.5,
                "deepen_factor": 1.0,
                "widen_factor": 1.0,
                "out_indices": (4,),
                "channel_attention": True,
                "norm_cfg": {"type": "SyncBN"},
                "act_cfg": {"type": "SiLU"},
            },
            "head": {
                "type": "RTMCCHead",
                "in_channels": 1024,
                "out_channels": 133,
                "input_size": _CODEC["input_size"],
                "in_featuremap_size": (9, 12),
                "simcc_split_ratio": _CODEC["simcc_split_ratio"],
                "final_layer_kernel_size": 7,
                "gau_cfg": {
                    "hidden_dims": 256,
                    "s": 128,
                    "expansion_factor": 2,
                    "dropout_rate": 0.0,
                    "drop_path": 0.0,
                    "act_fn": "SiLU",
                    "use_rel_bias": False,
                    "pos_enc": False,
                },
                "loss": {
                    "type": "KLDiscretLoss",
                    "use_target_weight": True,
                    "beta": 10.0,
                    "label_softmax": True,
                },
                "decoder": _CODEC,
            },
            "test_cfg": {"flip_test": True},
        },
        "train_dataloader": {"dataset": {"type": "CocoWholeBodyDataset", "metainfo": metainfo}},
        "test_dataloader": {
            "dataset": {
                "type": "CocoWholeBodyDataset",
                "metainfo": metainfo,
                "pipeline": pipeline,
            }
        },
    }


def build_model(device: torch.device) -> Any:
    """A randomly initialised RTMPose-L whole-body model with dataset meta (no checkpoint)."""
    import_mmpose()
    from mmengine.config import Config
    from mmpose.apis import init_model

    return init_model(Config(rtmpose_wholebody_config()), checkpoint=None, device=str(device))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load an mmengine checkpoint safely where possible.

    torch >= 2.6 unpickles with `weights_only=True`; the released `dw-ll_ucoco_384.pth` may carry
    numpy objects in its `meta`, which that refuses. The models directory is operator-supplied
    and checksum-verified, so only then is the file read again with full unpickling, and said so.
    """
    try:
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except pickle.UnpicklingError:
        logger.warning(
            "%s needs full unpickling (numpy objects in its meta); loading it as a "
            "trusted file of the models directory",
            path.name,
        )
        return dict(torch.load(path, map_location="cpu", weights_only=False))  # nosec B614 (verified weights file)


class DWPose:
    """68 face landmarks per BGR frame from the whole-body pose model (int32, truncated)."""

    def __init__(self, model: Any, dtype: torch.dtype = torch.float32) -> None:
        """`model`: an mmpose TopdownPoseEstimator. `dtype` other than fp32 runs the network
        under autocast (mmpose's preprocessing and keypoint decoding stay fp32)."""
        from mmengine.dataset import Compose

        self.model = model
        self.dtype = check_face_dtype(dtype, next(model.parameters()).device)
        if self.dtype != torch.float32:
            # mmpose decodes the SimCC vectors in numpy, which has no bfloat16: hand its
            # decoder fp32 (the head calls its own `forward` directly, so no hook would see it).
            head, decode = model.head, type(model.head).decode
            head.decode = lambda outputs: decode(head, tuple(o.float() for o in outputs))
        self._pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)
        self._crops: dict[tuple[int, int], _WholeFrameCrop] = {}
        # `face_landmarks_on_device`: the crops and their mirror through the network as one
        # batch of twice the size (half the launches; the network sees each image alone, so
        # only the batch size's last-bit effects differ from two passes).
        self.flip_in_one_batch = True
        # On CUDA channels-last, cuDNN's tensor-core layout: no layout conversion around each
        # convolution (the batched crops are made in it, see `_landmarks_batch`).
        self._memory_format = torch.contiguous_format
        if next(model.parameters()).device.type == "cuda":
            self._memory_format = torch.channels_last
            model.to(memory_format=self._memory_format)

    @classmethod
    def load(
        cls, checkpoint: Path, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> DWPose:
        from mmengine.runner.checkpoint import _load_checkpoint_to_model

        model = build_model(torch.device("cpu"))
        ckpt = read_checkpoint(checkpoint)
        state = ckpt.get("state_dict", ckpt)
        missing = set(model.state_dict()) - {k.removeprefix("module.") for k in state}
        if missing:
            raise ValueError(
                f"{checkpoint.name} is not an RTMPose-L whole-body checkpoint: "
                f"{len(missing)} parameters missing, e.g. {sorted(missing)[:3]}"
            )
        _load_checkpoint_to_model(model, ckpt, strict=False, revise_keys=[(r"^module\.", "")])
        dataset_meta = ckpt.get("meta", {}).get("dataset_meta")
        if dataset_meta is not None:  # mmpose prefers the checkpoint's meta over the config's
            model.dataset_meta = dataset_meta
        return cls(model.to(device).eval(), dtype)

    def _prepare_input(self, frame: np.ndarray) -> dict[str, Any]:
        """`inference_topdown`'s per-image steps with no person box: the whole frame is the box."""
        height, width = frame.shape[:2]
        info: dict[str, Any] = {
            "img": frame,
            "bbox": np.array([[0, 0, width, height]], dtype=np.float32),
            "bbox_score": np.ones(1, dtype=np.float32),
        }
        info.update(self.model.dataset_meta)
        return dict(self._pipeline(info))

    def _autocast(self) -> torch.autocast:
        device_type = next(self.model.parameters()).device.type
        return torch.autocast(device_type, self.dtype, enabled=self.dtype != torch.float32)

    @torch.inference_mode()
    def face_landmarks(self, frames_bgr: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
        """[N, 68, 2] int32 landmark pixels (x, y), one set per frame (DWPose always answers)."""
        from mmengine.dataset import pseudo_collate

        out = np.zeros((len(frames_bgr), 68, 2), dtype=np.int32)
        for start in range(0, len(frames_bgr), batch_size):
            items = host_map(self._prepare_input, frames_bgr[start : start + batch_size])
            with self._autocast():
                samples = self.model.test_step(pseudo_collate(items))
            for offset, sample in enumerate(samples):
                keypoints = np.asarray(sample.pred_instances.keypoints)[0]
                out[start + offset] = keypoints[FACE_KEYPOINTS].astype(np.int32)
        return out

    @torch.inference_mode()
    def face_landmarks_on_device(self, frames: torch.Tensor, batch_size: int = 32) -> np.ndarray:
        """`face_landmarks` for uint8 [N, H, W, 3] BGR frames already on the model's device.

        The same steps as mmpose's per-image pipeline and decoder, as batched tensor work:
        the whole-frame affine crop (one gather, `faces.affine`), the data preprocessor's
        channel order and normalisation, the flip test (the backbone on the crops and on their
        mirror, as `TopdownPoseEstimator.predict`), SimCC's argmax and the inverse transform.
        Only the 68 face points come back to the host.
        """
        out = np.zeros((len(frames), 68, 2), dtype=np.int32)
        if not len(frames):
            return out
        crop = self._whole_frame_crop(frames.shape[1], frames.shape[2])
        parts = []
        for start in range(0, len(frames), batch_size):
            part = frames[start : start + batch_size]
            parts.append(self._landmarks_batch(padded_batch(part, batch_size), crop)[: len(part)])
        out[:] = torch.cat(parts).cpu().numpy()
        return out

    def _whole_frame_crop(self, height: int, width: int) -> _WholeFrameCrop:
        """The pipeline's box, centre, scale and warp for a frame size, taken from the pipeline
        itself (run once on a blank frame), so they are mmpose's numbers."""
        if (height, width) not in self._crops:
            from mmpose.structures.bbox import get_warp_matrix

            info = self._prepare_input(np.zeros((height, width, 3), np.uint8))
            meta = info["data_samples"].metainfo
            center = np.asarray(meta["input_center"], np.float32)
            scale = np.asarray(meta["input_scale"], np.float32)
            size = tuple(int(v) for v in meta["input_size"])
            matrix = get_warp_matrix(center, scale, 0.0, output_size=size)
            device = next(self.model.parameters()).device
            flip = torch.as_tensor(meta["flip_indices"], device=device)
            self._crops[(height, width)] = _WholeFrameCrop(
                plan=warp_plan(matrix, (height, width), size, device),  # type: ignore[arg-type]
                center=torch.from_numpy(center).to(device),
                scale=torch.from_numpy(scale).to(device),
                size=torch.tensor(size, dtype=torch.float32, device=device),
                face_flip=flip[FACE_KEYPOINTS],
            )
        return self._crops[(height, width)]

    def _landmarks_batch(self, frames: torch.Tensor, crop: _WholeFrameCrop) -> torch.Tensor:
        preprocessor = self.model.data_preprocessor
        x = warp_batch(frames, crop.plan)  # [B, 3, h, w] BGR levels
        if preprocessor._channel_conversion:
            x = x[:, [2, 1, 0]]
        x = (x - preprocessor.mean) / preprocessor.std
        mirrored = x.flip(-1).contiguous(memory_format=self._memory_format)
        x = x.contiguous(memory_format=self._memory_format)
        with self._autocast():
            if self.flip_in_one_batch:
                both = torch.cat([x, mirrored])
                simcc_both_x, simcc_both_y = self.model.head.forward(self.model.extract_feat(both))
                pred_x, flip_x = simcc_both_x.chunk(2)
                pred_y, flip_y = simcc_both_y.chunk(2)
            else:
                pred_x, pred_y = self.model.head.forward(self.model.extract_feat(x))
                flip_x, flip_y = self.model.head.forward(self.model.extract_feat(mirrored))
        # RTMCCHead.predict's flip test, for the face points only: a face point's mirror is
        # another face point.
        simcc_x = (
            pred_x[:, FACE_KEYPOINTS].float() + flip_x[:, crop.face_flip].float().flip(-1)
        ) * 0.5
        simcc_y = (pred_y[:, FACE_KEYPOINTS].float() + flip_y[:, crop.face_flip].float()) * 0.5
        return decode_simcc(simcc_x, simcc_y, crop)


@dataclass(frozen=True)
class _WholeFrameCrop:
    plan: WarpPlan
    center: torch.Tensor  # [2] float32, the pipeline's input_center
    scale: torch.Tensor  # [2] float32, input_scale (aspect fixed to the input size)
    size: torch.Tensor  # [2] float32, input_size (w, h)
    face_flip: torch.Tensor  # [68] indices of each face point's mirror among the 133


def decode_simcc(
    simcc_x: torch.Tensor, simcc_y: torch.Tensor, crop: _WholeFrameCrop
) -> torch.Tensor:
    """mmpose's `get_simcc_maximum` + split ratio + `add_pred_to_datasample`, in float32 as
    there: [B, K, Wx], [B, K, Wy] -> int32 [B, K, 2] frame pixels (truncated, as the landmarks
    are cast)."""
    # argmax: the first of tied maxima, as numpy's
    locs = torch.stack([simcc_x.argmax(dim=-1), simcc_y.argmax(dim=-1)], dim=-1).float()
    locs[torch.minimum(simcc_x.amax(dim=-1), simcc_y.amax(dim=-1)) <= 0] = -1
    keypoints = locs / _CODEC["simcc_split_ratio"]
    keypoints = keypoints / crop.size * crop.scale + crop.center - 0.5 * crop.scale
    return keypoints.to(torch.int32)
