"""The Wav2Lip-style mel spectrogram SyncNet was trained on (spec §9; librosa semantics).

16 kHz, pre-emphasis 0.97, |STFT| (n_fft 800, hop 200, Hann 800, centred, zero padding as
librosa >= 0.10), Slaney mel 80 bands over 55-7600 Hz, 20*log10(max(1e-5, x)) - 20 dB, then
symmetric normalisation of [-100, 0] dB to [-4, 4]. 80 mel frames per second.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

SAMPLE_RATE = 16_000
N_FFT = 800
HOP = 200
N_MELS = 80
F_MIN, F_MAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB, REF_LEVEL_DB, MAX_ABS = -100.0, 20.0, 4.0
MEL_FRAMES_PER_SECOND = SAMPLE_RATE / HOP  # 80
WINDOW_FRAMES = 52  # ceil(16 / 5 * 16): 16 video frames at 25 fps
SILENCE = -MAX_ABS  # the normalised value of anything at or below -100 dB


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney (librosa htk=False): linear below 1 kHz, logarithmic above."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


@cache
def mel_filters() -> np.ndarray:
    """[80, 401] Slaney-normalised triangular filters, as `librosa.filters.mel` builds them."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    mel_points = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(F_MIN)), _hz_to_mel(np.array(F_MAX)), N_MELS + 2)
    )
    spacing = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / spacing[:-1, None]
    upper = ramps[2:] / spacing[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights.astype(np.float32)


def melspectrogram(audio_16k: np.ndarray) -> np.ndarray:
    """[80, 1 + len // 200] float32 in [-4, 4] from mono float audio at 16 kHz."""
    wav = np.asarray(audio_16k, dtype=np.float64)  # scipy's lfilter upstream works in float64
    emphasised = np.empty_like(wav)
    emphasised[:1] = wav[:1]
    emphasised[1:] = wav[1:] - PREEMPHASIS * wav[:-1]
    spectrum = torch.stft(
        torch.from_numpy(emphasised),
        n_fft=N_FFT,
        hop_length=HOP,
        win_length=N_FFT,
        window=torch.hann_window(N_FFT, periodic=True, dtype=torch.float64),
        center=True,
        pad_mode="constant",
        return_complex=True,
    ).abs()
    mel = mel_filters() @ spectrum.numpy()
    db = 20 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    normalised = 2 * MAX_ABS * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS
    return np.clip(normalised, -MAX_ABS, MAX_ABS).astype(np.float32)


def mel_start(frame: int, fps: float) -> int:
    """First mel frame of the window for video frame `frame`: int(80 * frame / fps)."""
    return int(MEL_FRAMES_PER_SECOND * (frame / float(fps)))
