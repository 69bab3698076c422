"""Silence skipping: frames far from speech reuse the avatar's own frames (no UNet, no VAE).

silero-vad (its pip package ships the model; nothing is downloaded) finds speech spans. Each
output frame gets a generation weight: 1 where its audio window touches speech, 0 deep inside
silence, and a linear ramp over `fade_frames` frames between them. The weight scales the blend
mask, so at a span edge the generated mouth fades into the original frame instead of jumping.
Only frames with weight 0 are skipped.
"""

from __future__ import annotations

import numpy as np
import torch

from runtime.engine.audio import PAD_LEFT, PAD_RIGHT, SAMPLE_RATE, WHISPER_FPS

# A frame's whisper window spans [-2*left, +2*(right+1)) steps of 20 ms around its start
# (spec §2.7: -80 ms .. +120 ms at 25 fps); speech anywhere in it drives the mouth.
WINDOW_BEFORE_S = 2 * PAD_LEFT / WHISPER_FPS
WINDOW_AFTER_S = 2 * (PAD_RIGHT + 1) / WHISPER_FPS
FADE_FRAMES = 4
MIN_SILENCE_MS = 300  # shorter pauses keep the generated mouth (no flicker between words)


class SpeechDetector:
    """Loaded once per engine; runs on CPU (the model is tiny and the GPU is busy)."""

    def __init__(self) -> None:
        from silero_vad import load_silero_vad

        self.model = load_silero_vad()

    def speech_spans(self, audio_16k: np.ndarray) -> list[tuple[float, float]]:
        """Speech spans in seconds."""
        from silero_vad import get_speech_timestamps

        with torch.inference_mode():
            spans = get_speech_timestamps(
                torch.from_numpy(audio_16k),
                self.model,
                sampling_rate=SAMPLE_RATE,
                min_silence_duration_ms=MIN_SILENCE_MS,
            )
        self.model.reset_states()
        return [(span["start"] / SAMPLE_RATE, span["end"] / SAMPLE_RATE) for span in spans]


def generation_weights(
    num_frames: int, fps: int, spans: list[tuple[float, float]], *, fade_frames: int = FADE_FRAMES
) -> np.ndarray:
    """[num_frames] float32 in [0, 1]: how much of the generated face each frame shows."""
    starts = np.arange(num_frames) / fps
    speech = np.zeros(num_frames, dtype=bool)
    for begin, end in spans:
        speech |= (starts - WINDOW_BEFORE_S < end) & (starts + WINDOW_AFTER_S > begin)
    if not speech.any():
        return np.zeros(num_frames, dtype=np.float32)
    # Distance (in frames) from each frame to the nearest speech frame.
    speech_at = np.flatnonzero(speech)
    frames = np.arange(num_frames)
    slot = np.clip(np.searchsorted(speech_at, frames), 1, len(speech_at) - 1)
    if len(speech_at) == 1:
        distance = np.abs(frames - speech_at[0])
    else:
        distance = np.minimum(
            np.abs(frames - speech_at[slot - 1]), np.abs(frames - speech_at[slot])
        )
    weights = 1.0 - distance / (fade_frames + 1)
    return np.clip(weights, 0.0, 1.0).astype(np.float32)
