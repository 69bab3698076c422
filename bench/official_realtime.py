"""End to end through the official realtime flow and through our engine, one case at a time.

Official: `scripts/realtime_inference.py`'s `Avatar` (its `prepare_material`: frames, boxes with
the v1.5 margin, `get_latents_for_unet`, `get_image_prepare_material` masks; its `inference`:
`AudioProcessor`, `datagen`, PE, UNet, `decode_latents`, `get_image_blending` on its worker
thread), with the module globals its `__main__` would set, in fp32 on CPU (upstream's realtime
runs fp16 on a GPU). Ours: `MuseTalkEngine.prepare` and `speak` with the realtime mask blur.
Both get the same injected DWPose landmarks and S3FD box (`official_cases`; the detector cases
run the random face models on both sides instead), and upstream's
posterior sample is replaced by its mean (our deviation 1). What each side produced is recorded
on the way: boxes, audio tokens, latents, masks under the box, decoded faces and the final
frames before video encoding (ours: the composited BGR frame the engine converts to I420).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.official_cases import Case, detected_box, face_landmarks, int_box
from runtime.engine.audio import load_audio_16k
from runtime.engine.blend import PasteBox
from runtime.engine.engine import MuseTalkEngine
from runtime.engine.faces import FaceLocator
from runtime.engine.frame_compose import mask_over_box
from runtime.engine.layout import ModelsLayout
from runtime.engine.options import AvatarOptions, RenderOptions

CHEEK_WIDTH = 90
REALTIME_BATCH = 20  # realtime_inference.py's --batch_size default


@dataclass
class Run:
    """What one implementation produced for a case (per source frame, then per output frame)."""

    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    latents: list[np.ndarray] = field(default_factory=list)  # [8, 32, 32] each
    masks: list[np.ndarray] = field(default_factory=list)  # under the paste box
    tokens: np.ndarray | None = None  # [T, 50, 384]
    faces: list[np.ndarray] = field(default_factory=list)  # 256x256 BGR, output order
    frames: list[np.ndarray] = field(default_factory=list)  # final BGR frames, output order


def trimmed_audio(source: Path, seconds: float, out: Path) -> Path:
    """The first `seconds` of `source` as 16 kHz 16-bit mono WAV (both sides load this)."""
    samples = load_audio_16k(source)[: int(seconds * 16000)]
    pcm = np.clip(samples * 32767, -32768, 32767).astype("<i2")
    with wave.open(str(out), "wb") as stream:
        stream.setnchannels(1)
        stream.setsampwidth(2)
        stream.setframerate(16000)
        stream.writeframes(pcm.tobytes())
    return out


@contextlib.contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def posterior_mean() -> Iterator[None]:
    """Upstream samples the VAE posterior with unseeded noise; ours takes the mean."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    with patched(DiagonalGaussianDistribution, "sample", DiagonalGaussianDistribution.mode):
        yield


@contextlib.contextmanager
def injected_official_faces(preprocessing: Any, case: Case) -> Iterator[None]:
    """The case's face into the official `get_landmark_and_bbox` (DWPose and S3FD outputs)."""
    from mmengine.structures import InstanceData
    from mmpose.structures import PoseDataSample

    def topdown(model: Any, image: np.ndarray) -> list[PoseDataSample]:
        keypoints = np.zeros((1, 133, 2), dtype=np.float32)
        keypoints[0, 23:91] = face_landmarks(image.shape[1], image.shape[0], case.face)
        sample = PoseDataSample()
        sample.pred_instances = InstanceData(keypoints=keypoints)
        return [sample]

    def detect(images: np.ndarray) -> list[tuple[int, int, int, int]]:
        height, width = images.shape[1:3]
        return [detected_box(width, height, case.face)] * len(images)

    with (
        patched(preprocessing, "inference_topdown", topdown),
        patched(preprocessing.fa, "get_detections_for_batch", detect),
    ):
        yield


class OfficialRealtime:
    """`realtime_inference.py` imported, its globals set as its `__main__` sets them (fp32)."""

    def __init__(self, workspace: Path, models: Path) -> None:
        from transformers import WhisperModel

        from bench.official_workspace import official_imports, quiet

        layout = ModelsLayout(models)
        with quiet(), official_imports():
            sys.path.insert(0, str(workspace / "scripts"))
            import realtime_inference as script
            from musetalk.models.unet import PositionalEncoding, UNet
            from musetalk.models.vae import VAE
            from musetalk.utils import preprocessing
            from musetalk.utils.audio_processor import AudioProcessor
            from musetalk.utils.face_parsing import FaceParsing
        self.script, self.preprocessing, self.datagen = script, preprocessing, script.datagen
        cpu = torch.device("cpu")
        script.args = argparse.Namespace(
            version="v15",
            extra_margin=10,
            parsing_mode="jaw",
            audio_padding_length_left=2,
            audio_padding_length_right=2,
            skip_save_images=True,
        )
        script.device, script.weight_dtype = cpu, torch.float32
        script.timesteps = torch.tensor([0], device=cpu)
        script.vae = VAE(model_path=str(layout.vae_dir), use_float16=False)
        script.unet = UNet(str(layout.unet_config), str(layout.unet_weights), device=cpu)
        script.pe = PositionalEncoding(d_model=384)
        script.audio_processor = AudioProcessor(feature_extractor_path=str(layout.whisper_dir))
        script.whisper = WhisperModel.from_pretrained(str(layout.whisper_dir)).eval()
        with quiet():
            script.fp = FaceParsing(left_cheek_width=CHEEK_WIDTH, right_cheek_width=CHEEK_WIDTH)

    def run(self, case: Case, audio: Path, avatar_id: str) -> Run:
        from bench.official_workspace import quiet

        script, run = self.script, Run()
        faces = (
            contextlib.nullcontext()
            if case.detector
            else injected_official_faces(self.preprocessing, case)
        )
        with faces, posterior_mean(), quiet():
            avatar = script.Avatar(
                avatar_id=avatar_id,
                video_path=str(case.media if case.is_video else case.media.parent),
                bbox_shift=case.bbox_shift,
                batch_size=REALTIME_BATCH,
                preparation=True,
            )
        count = len(avatar.frame_list_cycle) // 2
        run.boxes = [int_box(box) for box in avatar.coord_list_cycle[:count]]
        run.latents = [latent[0].numpy() for latent in avatar.input_latent_list_cycle[:count]]
        run.masks = [
            mask_over_box(mask, crop, box)
            for mask, crop, box in zip(
                avatar.mask_list_cycle[:count],
                avatar.mask_coords_list_cycle[:count],
                run.boxes,
                strict=True,
            )
        ]
        decode, chunk = script.vae.decode_latents, script.audio_processor.get_whisper_chunk
        blending = script.get_image_blending

        def record_decode(latents: torch.Tensor) -> np.ndarray:
            faces = decode(latents)
            run.faces.extend(np.asarray(faces).astype(np.uint8))
            return faces

        def record_chunk(*args: Any, **kwargs: Any) -> torch.Tensor:
            tokens = chunk(*args, **kwargs)
            run.tokens = tokens.numpy()
            return tokens

        def record_blending(*args: Any) -> np.ndarray:
            frame = blending(*args)
            run.frames.append(np.ascontiguousarray(frame))
            return frame

        with (
            # datagen's `device` defaults to "cuda:0" and the script does not pass one
            patched(script, "datagen", functools.partial(self.datagen, device="cpu")),
            patched(script.vae, "decode_latents", record_decode),
            patched(script.audio_processor, "get_whisper_chunk", record_chunk),
            patched(script, "get_image_blending", record_blending),
            quiet(),
        ):
            avatar.inference(str(audio), None, 25, True)
        return run


class _Detector:
    def __init__(self, case: Case) -> None:
        self.case = case

    def detect(self, frames: list[np.ndarray], batch_size: int = 1) -> list[Any]:
        return [detected_box(f.shape[1], f.shape[0], self.case.face) for f in frames]


class _Landmarker:
    def __init__(self, case: Case) -> None:
        self.case = case

    def face_landmarks(self, frames: list[np.ndarray], batch_size: int = 1) -> np.ndarray:
        points = [face_landmarks(f.shape[1], f.shape[0], self.case.face) for f in frames]
        return np.stack(points).astype(np.int32).reshape(len(frames), 68, 2)


def injected_locator(case: Case) -> FaceLocator:
    """Our `FaceLocator` (its box rule, margin and checks) on the case's injected face."""
    return FaceLocator(_Detector(case), _Landmarker(case))  # type: ignore[arg-type]


def load_ours(models: Path) -> MuseTalkEngine:
    engine = MuseTalkEngine.load(models, torch.device("cpu"), torch.float32)
    engine.scorer = None  # the sync score is ours alone; nothing to compare
    return engine


def run_ours(engine: MuseTalkEngine, case: Case, audio: Path, models: Path) -> Run:
    run = Run()
    cpu = torch.device("cpu")
    engine.locator = FaceLocator.load(models, cpu) if case.detector else injected_locator(case)
    avatar = engine.prepare(
        case.media, AvatarOptions(bbox_shift=case.bbox_shift, mask_blur="realtime")
    )
    run.boxes = [int_box(box) for box in avatar.boxes]
    run.latents = list(avatar.latents)
    run.masks = list(avatar.masks)
    decode, compose = engine.codec.decode, engine.compose_frame
    tokens_of = engine.audio_encoder.frame_tokens

    def record_decode(latents: torch.Tensor) -> torch.Tensor:
        faces = decode(latents)
        run.faces.extend(faces.flip(1).permute(0, 2, 3, 1).cpu().numpy())  # RGB -> BGR
        return faces

    def record_tokens(*args: Any, **kwargs: Any) -> torch.Tensor:
        tokens = tokens_of(*args, **kwargs)
        run.tokens = tokens.float().cpu().numpy()
        return tokens

    def record_compose(avatar: Any, output_frame: int, source: Any, generated: Any) -> Any:
        index = avatar.cycle_index(output_frame)
        frame = avatar.frames[index].copy()
        if generated is not None:
            region = generated[0]
            x1, y1, x2, y2 = (int(v) for v in avatar.boxes[index])
            vx1, vy1, _, _ = PasteBox(x1, y1, x2, y2, frame.shape[1], frame.shape[0]).visible
            frame[vy1 : vy1 + region.shape[0], vx1 : vx1 + region.shape[1]] = region
        run.frames.append(frame)
        return compose(avatar, output_frame, source, generated)

    with (
        tempfile.TemporaryDirectory(prefix="ours-") as out,
        patched(engine.codec, "decode", record_decode),
        patched(engine.audio_encoder, "frame_tokens", record_tokens),
        patched(engine, "compose_frame", record_compose),
    ):
        engine.speak(
            avatar,
            audio,
            Path(out) / "out.mp4",
            options=RenderOptions(skip_silence=False),
            batch_size=REALTIME_BATCH,
        )
    return run
