"""The engine's generator, codec and audio encoder backed by loaded AOT packages (`aot_load`):
the same methods the speak path calls, without importing diffusers or transformers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from runtime.engine.audio import (
    D_MODEL,
    HIDDEN_STATES,
    SEGMENT_SAMPLES,
    WindowPlan,
    frame_windows,
)

if TYPE_CHECKING:
    from runtime.engine.aot_load import StaticRunner

log = logging.getLogger(__name__)


class AotGenerator:
    """`Generator` with the UNet step from its package."""

    def __init__(self, step: StaticRunner, device: torch.device, dtype: torch.dtype) -> None:
        self._step = step
        self.device = device
        self.dtype = dtype
        self.batch_size = step.batch_size

    @torch.inference_mode()
    def step(self, latents: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        return self._step(latents, audio_tokens)


class AotCodec:
    """`LatentCodec` whose decode runs the package; everything else (the VAE encoder that
    preparation uses) goes to the eager codec, built with diffusers on first use."""

    def __init__(self, decode: StaticRunner, eager_codec: Callable[[], Any]) -> None:
        self._decode = decode
        self._eager_codec = eager_codec
        self._eager: Any = None

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._decode(latents)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._eager is None:
            log.info("loading the eager VAE (for preparation) beside the AOT decoder")
            self._eager = self._eager_codec()
        return getattr(self._eager, name)


class LogMel:
    """Whisper's log-mel spectrogram, as `WhisperFeatureExtractor`'s torch path computes it
    (same STFT, the extractor's own mel filters), without importing transformers."""

    def __init__(self, mel_filters: torch.Tensor, *, n_fft: int, hop_length: int) -> None:
        self.mel_filters = mel_filters.float()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.window = torch.hann_window(n_fft)

    def __call__(self, segment: np.ndarray) -> torch.Tensor:
        """One segment (≤ 30 s at 16 kHz), zero-padded to 30 s -> [80, 3000] float32."""
        padded = np.zeros(SEGMENT_SAMPLES, dtype=np.float32)
        padded[: len(segment)] = segment[:SEGMENT_SAMPLES]
        waveform = torch.from_numpy(padded)
        stft = torch.stft(
            waveform, self.n_fft, self.hop_length, window=self.window, return_complex=True
        )
        magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
        log_spec = torch.clamp(self.mel_filters.T @ magnitudes, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0


class AotAudioEncoder:
    """`AudioEncoder` with the Whisper encoder from its package and no transformers import."""

    def __init__(
        self, encoder: StaticRunner, mel: LogMel, device: torch.device, dtype: torch.dtype
    ) -> None:
        self._encoder = encoder
        self.mel = mel
        self.device = device
        self.dtype = dtype

    @torch.inference_mode()
    def features(self, audio_16k: np.ndarray) -> torch.Tensor:
        """Spec §2.2-2.4: [steps, 5, 384] for the whole clip (1500 steps per 30 s segment)."""
        outputs = [
            self._encoder(self.mel(audio_16k[start : start + SEGMENT_SAMPLES])[None]).clone()
            for start in range(0, max(len(audio_16k), 1), SEGMENT_SAMPLES)
        ]
        return torch.cat(outputs).reshape(-1, HIDDEN_STATES, D_MODEL)

    def frame_tokens(self, audio_16k: np.ndarray, fps: float) -> torch.Tensor:
        return frame_windows(self.features(audio_16k), WindowPlan.of(len(audio_16k), fps))
