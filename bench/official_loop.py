"""Upstream MuseTalk's realtime loop, run by its own code, as the speak benchmark's baseline.

`bench/speak.py --official DIR` imports `scripts/realtime_inference.py` from a checkout of
TMElyralab/MuseTalk (read only, never copied into this repository) and calls its
`Avatar.inference` on the benchmark's avatar and speech, with the same weights loaded by
upstream's own classes (`musetalk.models.unet.UNet`, `musetalk.models.vae.VAE`,
`PositionalEncoding`, `AudioProcessor`, transformers' `WhisperModel`) in fp16, as its
`__main__` does. What runs is upstream's: Whisper features and windows, `datagen` batches of 20,
UNet, `decode_latents` (faces to the host as BGR uint8), and its frame thread (`process_frames`:
a deep copy of the source frame, OpenCV resize, PIL paste through the mask with
`get_image_blending`). `skip_save_images` is on, as upstream times its realtime figure: no
video is written, so every ratio against it is conservative for our rows (they end in an mp4).

Only the avatar's preparation is not upstream's (it needs the face models): the benchmark's
prepared avatar gives the frames, boxes and latents, and each box's blend mask is placed in
the 1.5x crop box the way `get_image_prepare_material` places its parsing mask. Shims (only
where the package is missing): those of `bench/official_workspace.py` (torchvision.transforms,
einops, librosa's `load`: our PyAV loader, so audio decoding is ours), plus `omegaconf` and
`tqdm`; `musetalk.utils.preprocessing` is replaced by a stub for the loop (it loads S3FD and DWPose
at import, which the loop never calls).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from bench import official_workspace
from bench.official_cases import int_box
from runtime.engine.avatar import PreparedAvatar
from runtime.engine.layout import ModelsLayout

BATCH = 20  # realtime_inference.py's --batch_size default
EXPAND = 1.5  # get_image_prepare_material's crop box around the face box
PADDING = 2  # --audio_padding_length_left / _right defaults


def _extra_shims(*, stub_preprocessing: bool) -> dict[str, ModuleType]:
    """Packages realtime_inference.py imports that the loop never uses (with
    `stub_preprocessing`, also the face models' module: the loop never prepares)."""

    def unused(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the realtime loop's preparation is not run by the benchmark")

    shims: dict[str, ModuleType] = {}
    if stub_preprocessing:
        shims["musetalk.utils.preprocessing"] = official_workspace._module(
            "musetalk.utils.preprocessing", get_landmark_and_bbox=unused, read_imgs=unused
        )
    if importlib.util.find_spec("omegaconf") is None:
        shims["omegaconf"] = official_workspace._module("omegaconf", OmegaConf=None)
    if importlib.util.find_spec("tqdm") is None:
        shims["tqdm"] = official_workspace._module("tqdm", tqdm=lambda iterable, **kw: iterable)
    return shims


def realtime_module(official: Path, *, stub_preprocessing: bool = True) -> ModuleType:
    """`scripts/realtime_inference.py` of the checkout, imported (its `__main__` block not run)
    with the shims of `bench/official_workspace.py`; without
    `stub_preprocessing`, its real `musetalk.utils.preprocessing` (which loads DWPose and S3FD
    at import: run from an `official_workspace`)."""
    import transformers  # noqa: F401  # before any shim exists: it probes optional packages

    script = official / "scripts" / "realtime_inference.py"
    if not script.is_file():
        raise FileNotFoundError(f"--official: {script} not found (a TMElyralab/MuseTalk checkout)")
    sys.path.insert(0, str(official))
    extra = _extra_shims(stub_preprocessing=stub_preprocessing)
    sys.modules.update(extra)
    try:
        with official_workspace.official_imports(), contextlib.redirect_stdout(io.StringIO()):
            spec = importlib.util.spec_from_file_location("musetalk_realtime", script)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {script}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
    finally:
        for name in extra:
            sys.modules.pop(name, None)
    return module


def _decorated_class(decorated: Any) -> type:
    """The class under `@torch.no_grad()`: torch wraps a decorated class in a function."""
    if isinstance(decorated, type):
        return decorated
    for cell in getattr(decorated, "__closure__", None) or ():
        with contextlib.suppress(ValueError):
            inner = cell.cell_contents
            if isinstance(inner, type) and inner.__name__ == "Avatar":
                return inner
            if callable(inner) and getattr(inner, "__closure__", None):
                with contextlib.suppress(TypeError):
                    return _decorated_class(inner)
    raise TypeError("realtime_inference.Avatar: class not found under its decorator")


def crop_box_mask(box: tuple[int, int, int, int], mask: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """A face box's blend mask placed in upstream's crop box (1.5x the box's larger side,
    centred), as `get_image_prepare_material` returns its mask: zero outside the box."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    half = int(max(x2 - x1, y2 - y1) // 2 * EXPAND)
    crop = [cx - half, cy - half, cx + half, cy + half]
    placed = np.zeros((2 * half, 2 * half), dtype=np.uint8)
    placed[y1 - crop[1] : y2 - crop[1], x1 - crop[0] : x2 - crop[0]] = mask
    return placed, crop


class OfficialLoop:
    """Upstream's models and its `Avatar`, holding the benchmark's prepared avatar."""

    def __init__(
        self,
        official: Path,
        models: Path,
        device: torch.device,
        avatar: PreparedAvatar,
    ) -> None:
        from transformers import WhisperModel

        self.module = module = realtime_module(official.resolve())
        self.work = Path(tempfile.mkdtemp(prefix="official-loop-"))
        layout = ModelsLayout(models)
        # realtime_inference.py's __main__, line by line: everything fp16 on the device
        # (an absolute vae_type wins over load_all_model's "models/" prefix)
        with contextlib.redirect_stdout(io.StringIO()):
            vae, unet, pe = module.load_all_model(
                unet_model_path=str(layout.unet_weights),
                vae_type=str(layout.vae_dir.resolve()),
                unet_config=str(layout.unet_config),
                device=device,
            )
        vae.vae = vae.vae.half().to(device)
        unet.model = unet.model.half().to(device)
        whisper = WhisperModel.from_pretrained(str(layout.whisper_dir))
        # transformers wraps `PreTrainedModel.to` in functools.wraps, which mypy reads unbound
        whisper = whisper.to(device=device, dtype=unet.model.dtype).eval()  # type: ignore[call-arg]
        whisper.requires_grad_(False)
        module.__dict__.update(
            args=argparse.Namespace(
                version="v15",
                audio_padding_length_left=PADDING,
                audio_padding_length_right=PADDING,
                skip_save_images=True,
            ),
            device=device,
            vae=vae,
            unet=unet,
            pe=pe.half().to(device),
            timesteps=torch.tensor([0], device=device),
            audio_processor=module.AudioProcessor(feature_extractor_path=str(layout.whisper_dir)),
            weight_dtype=unet.model.dtype,
            whisper=whisper,
        )
        if device.type != "cuda":  # datagen moves its short last batch to "cuda:0" by default
            module.__dict__.update(datagen=functools.partial(module.datagen, device=device))
        self.device = device
        self.avatar = self._avatar(avatar)

    def _avatar(self, prepared: PreparedAvatar) -> Any:
        """Upstream's Avatar with the lists its preparation would have loaded (the cycle's
        order: frames, then the same frames reversed)."""
        cls = _decorated_class(self.module.Avatar)
        avatar: object = object.__new__(cls)  # without __init__, which would prepare it
        cycle = [prepared.cycle_index(i) for i in range(2 * prepared.frame_count)]
        placed = [
            crop_box_mask(int_box(prepared.boxes[i]), prepared.masks[i])
            for i in range(prepared.frame_count)
        ]
        latents = torch.from_numpy(prepared.latents)
        avatar.__dict__.update(
            avatar_path=str(self.work),
            batch_size=BATCH,
            idx=0,
            frame_list_cycle=[prepared.frames[i] for i in cycle],
            coord_list_cycle=[[int(v) for v in prepared.boxes[i]] for i in cycle],
            input_latent_list_cycle=[latents[i : i + 1] for i in cycle],
            mask_list_cycle=[placed[i][0] for i in cycle],
            mask_coords_list_cycle=[placed[i][1] for i in cycle],
        )
        return avatar

    def render(self, audio: Path, fps: float) -> dict[str, float]:
        """One `Avatar.inference` over `audio`: frames generated, wall ms, and the ms until
        the audio features were ready (upstream's own figure starts after them)."""
        processor = self.module.audio_processor
        chunk = processor.get_whisper_chunk
        seen: dict[str, float] = {}

        def timed_chunk(*args: Any, **kwargs: Any) -> torch.Tensor:
            chunks = chunk(*args, **kwargs)
            self._sync()
            seen["frames"] = len(chunks)
            seen["audio"] = (time.perf_counter() - start) * 1000
            return chunks

        with _quiet():
            processor.get_whisper_chunk = timed_chunk
            try:
                self._sync()
                start = time.perf_counter()
                self.avatar.inference(str(audio), None, fps, True)
                self._sync()
                seen["wall"] = (time.perf_counter() - start) * 1000
            except BaseException:
                self.avatar.idx = sys.maxsize  # lets upstream's frame thread end
                raise
            finally:
                processor.get_whisper_chunk = chunk
        return seen

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Upstream prints progress bars and per-call banners."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def measure(loop: OfficialLoop, audio: Path, fps: float, runs: int) -> dict[str, Any]:
    """Frames/s of `runs` renders after one warm-up: median, spread, and every sample."""
    loop.render(audio, fps)  # warm-up: cuDNN selection, allocator, Whisper's first call
    samples = [loop.render(audio, fps) for _ in range(runs)]
    rates = [sample["frames"] / sample["wall"] * 1000 for sample in samples]
    return {
        "path": f"official realtime loop (upstream code), batch {BATCH}",
        "fps": round(statistics.median(rates), 1),
        "fps_min_max": [round(min(rates), 1), round(max(rates), 1)],
        "fps_samples": [round(rate, 1) for rate in rates],
        "frames": int(samples[0]["frames"]),
        "audio_ms_median": round(statistics.median(sample["audio"] for sample in samples), 1),
        "runs": runs,
        "writes_video": False,
    }
