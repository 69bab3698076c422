"""Speech audio to per-frame Whisper tokens, exactly as spec §2 describes the official pipeline.

`load_audio_16k` decodes any container PyAV reads, mixes to mono and resamples with soxr's HQ
recipe (what librosa.load(sr=16000) uses). `AudioEncoder.features` runs WhisperFeatureExtractor
and the encoder per 30 s segment and keeps all five hidden states; `frame_windows` cuts the
[T, 50, 384] token windows; `positional_encoding` is the table added just before the UNet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soxr
import torch

from runtime.engine.engine_contract import Failure, MediaError
from runtime.engine.untrusted import DecodeLimits, UnreadableMedia, audio_frames
from runtime.engine.weight_cache import WeightCache, load_module

SAMPLE_RATE = 16000
SEGMENT_SAMPLES = 480000  # 30 s, the Whisper window
WHISPER_FPS = 50  # encoder steps per second (10 ms mel hop, then stride 2)
HIDDEN_STATES = 5  # embeddings, layers 1-3, LayerNorm(layer 4)
PAD_LEFT = 2  # --audio_padding_length_left
PAD_RIGHT = 2  # --audio_padding_length_right
WINDOW_STEPS = 2 * (PAD_LEFT + PAD_RIGHT + 1)  # 10 whisper steps per video frame
TOKENS_PER_FRAME = WINDOW_STEPS * HIDDEN_STATES  # 50
D_MODEL = 384


def load_audio_16k(path: Path, limits: DecodeLimits | None = None) -> np.ndarray:
    """First audio stream as mono float32 at 16 kHz, with librosa.load(sr=16000) semantics.

    Decoded within `limits` (`untrusted.audio_frames`: checked frame by frame, converted to
    packed samples before numpy sees them); RefusedMedia past them.
    """
    limits = limits or DecodeLimits()
    rates: set[int] = set()
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(Failure.NO_SPEECH, "the audio file has no audio stream")
            # The channel mean per chunk (channels may change mid-stream), in float32 as
            # soundfile's s16 -> float (/ 32768) and librosa's to_mono do.
            chunks = []
            for packed, rate in audio_frames(container, limits):
                rates.add(rate)
                chunks.append(packed.T.astype(np.float32).mean(axis=0))
    except av.error.FFmpegError as error:
        raise MediaError(Failure.INVALID_MEDIA, "the audio file cannot be decoded") from error
    if len(rates) > 1:
        raise UnreadableMedia(f"audio: the sample rate changes mid-stream ({sorted(rates)})")
    if not chunks:
        raise MediaError(Failure.NO_SPEECH, "the audio stream is empty")
    mono = np.concatenate(chunks)
    (rate,) = rates
    if rate == SAMPLE_RATE:
        return np.ascontiguousarray(mono, dtype=np.float32)
    return np.asarray(soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ"), dtype=np.float32)


def frame_count(num_samples: int, fps: float) -> int:
    """Spec §2.5: the video length the audio sets, with the fps truncated to an int."""
    return math.floor(num_samples / SAMPLE_RATE * int(fps))


@dataclass(frozen=True)
class WindowPlan:
    """Spec §2.5-2.7 arithmetic for one clip, kept apart from tensors so it can be tested alone."""

    num_frames: int
    actual_len: int  # whisper steps kept after trimming the padded tail
    pad_front: int
    pad_back: int
    mult: float

    @classmethod
    def of(cls, num_samples: int, fps: float) -> WindowPlan:
        fps_i = int(fps)
        mult = WHISPER_FPS / fps_i
        p = math.ceil(mult)
        return cls(
            num_frames=frame_count(num_samples, fps),
            actual_len=math.floor(num_samples / SAMPLE_RATE * WHISPER_FPS),
            pad_front=p * PAD_LEFT,
            pad_back=p * 3 * PAD_RIGHT,
            mult=mult,
        )

    def window_start(self, frame: int) -> int:
        """Index into the padded feature sequence where frame `frame`'s 10-step window starts."""
        return math.floor(frame * self.mult)


class AudioEncoder:
    """WhisperFeatureExtractor + WhisperModel encoder; loaded once per engine."""

    def __init__(
        self,
        whisper_dir: Path,
        device: torch.device,
        dtype: torch.dtype,
        *,
        cache: WeightCache | None = None,
    ) -> None:
        from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

        self.device = device
        self.dtype = dtype
        # A local, checksum-verified directory: never a download from the Hub at run time.
        self.extractor = WhisperFeatureExtractor.from_pretrained(  # nosec B615
            whisper_dir, local_files_only=True
        )

        def build() -> torch.nn.Module:
            config = WhisperConfig.from_pretrained(whisper_dir, local_files_only=True)  # nosec B615
            return WhisperModel(config).get_encoder()

        def from_sources() -> torch.nn.Module:
            model = WhisperModel.from_pretrained(whisper_dir, local_files_only=True)  # nosec B615
            return model.get_encoder().to(device=device, dtype=dtype)

        sources = [
            path
            for name in ("config.json", "pytorch_model.bin", "model.safetensors")
            if (path := whisper_dir / name).is_file()
        ]
        self.encoder = load_module(
            cache,
            "whisper_encoder",
            sources,
            build_empty=build,
            load_from_sources=from_sources,
            device=device,
            dtype=dtype,
        )

    @torch.inference_mode()
    def features(self, audio_16k: np.ndarray, *, segments_per_batch: int = 4) -> torch.Tensor:
        """Spec §2.2-2.4: [steps, 5, 384] for the whole clip (1500 steps per 30 s segment)."""
        segments = [
            audio_16k[start : start + SEGMENT_SAMPLES]
            for start in range(0, max(len(audio_16k), 1), SEGMENT_SAMPLES)
        ]
        # Log-mel per segment (the dynamic-range clamp is per segment), always fp32.
        mels = [
            self.extractor(segment, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features[
                0
            ]
            for segment in segments
        ]
        outputs = []
        for start in range(0, len(mels), segments_per_batch):
            batch = torch.stack(mels[start : start + segments_per_batch])
            batch = batch.to(device=self.device, dtype=self.dtype)
            encoded = self.encoder(batch, output_hidden_states=True)
            # Index 4 is LayerNorm(layer 4): take it from last_hidden_state explicitly rather
            # than trusting how a transformers version records hidden states.
            states = [*encoded.hidden_states[:4], encoded.last_hidden_state]
            outputs.append(torch.stack(states, dim=2))  # [b, 1500, 5, 384]
        return torch.cat(outputs, dim=0).reshape(-1, HIDDEN_STATES, D_MODEL)

    def frame_tokens(self, audio_16k: np.ndarray, fps: float) -> torch.Tensor:
        """[T, 50, 384] whisper tokens per video frame (before the positional encoding)."""
        return frame_windows(self.features(audio_16k), WindowPlan.of(len(audio_16k), fps))


def frame_windows(features: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
    """Spec §2.5-2.8: trim, zero-pad, cut one 10-step window per frame, flatten (time, layer)."""
    trimmed = features[: plan.actual_len]
    front = trimmed.new_zeros((plan.pad_front, *trimmed.shape[1:]))
    back = trimmed.new_zeros((plan.pad_back, *trimmed.shape[1:]))
    padded = torch.cat([front, trimmed, back], dim=0)
    starts = torch.tensor([plan.window_start(i) for i in range(plan.num_frames)], dtype=torch.long)
    if plan.num_frames and int(starts[-1]) + WINDOW_STEPS > padded.shape[0]:
        raise ValueError("audio window runs past the padded features")
    index = starts[:, None] + torch.arange(WINDOW_STEPS)[None, :]  # [T, 10]
    windows = padded[index.to(padded.device)]  # [T, 10, 5, 384]
    return windows.reshape(plan.num_frames, TOKENS_PER_FRAME, D_MODEL)


def positional_encoding(length: int = TOKENS_PER_FRAME, d_model: int = D_MODEL) -> torch.Tensor:
    """Spec §2.9: the sinusoidal table added to each frame's 50 tokens, built in fp32."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)
    return table
