"""Lip-sync confidence and offset of a rendered clip with the LatentSync SyncNet.

Upstream has no evaluator (spec §9); this is ours. Definition:
- A window is 16 consecutive generated crops starting at frame s (every `window_step` frames),
  lower halves in [-1, 1], and the 52 mel frames starting at int(80 * (s + o) / fps) for an audio
  offset o. Mel frames outside the clip read as silence.
- sim(s, o) is the cosine similarity of the two unit embeddings.
- offset_frames = the o in [-max_offset, max_offset] maximising mean_s sim(s, o) (ties: smallest
  |o|). Positive: the sound that matches the mouth comes o frames later than the frame.
- confidence = mean_s sim(s, offset_frames): the mean similarity at the best offset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtime.engine.engine_contract import SyncSums
from runtime.engine.sync.mel import SILENCE, WINDOW_FRAMES, mel_start, melspectrogram
from runtime.engine.sync.syncnet import SyncNet, SyncNetConfig

logger = logging.getLogger(__name__)

SYNCNET_WEIGHTS = Path("syncnet/latentsync_syncnet.pt")
SYNCNET_CONFIG = Path("syncnet/syncnet_config.json")  # ours, optional; absent = official size
CLIP_FRAMES = 16
FACE_SIZE = 256


@dataclass(frozen=True)
class SyncScore:
    confidence: float  # mean cosine similarity at the best offset (higher = better)
    offset_frames: int  # audio offset (frames, within ±max_offset) that maximises it


def best_offset(similarity: np.ndarray, offsets: np.ndarray) -> SyncScore:
    """similarity [windows, offsets] -> the clip's best offset and its mean similarity."""
    return best_mean_offset(similarity.mean(axis=0), offsets)


def score_of_sums(sums: SyncSums) -> SyncScore | None:
    """The score of windows summed segment by segment (`window_sums`); None without windows."""
    if sums.windows == 0:
        return None
    max_offset = (len(sums.similarity) - 1) // 2
    means = np.asarray(sums.similarity, dtype=np.float64) / sums.windows
    return best_mean_offset(means, np.arange(-max_offset, max_offset + 1))


def best_mean_offset(means: np.ndarray, offsets: np.ndarray) -> SyncScore:
    """Mean similarity per offset -> the best offset (ties: smallest |o|) and its mean."""
    best = max(
        range(len(offsets)), key=lambda i: (round(float(means[i]), 6), -abs(int(offsets[i])))
    )
    return SyncScore(confidence=float(means[best]), offset_frames=int(offsets[best]))


class SyncScorer:
    def __init__(
        self, net: SyncNet, device: torch.device, *, max_offset: int = 15, window_step: int = 4
    ) -> None:
        self.net = net.to(device).eval()
        self.device = device
        self.max_offset = max_offset
        self.window_step = window_step

    @classmethod
    def load(cls, models_dir: Path, device: torch.device) -> SyncScorer:
        config_path = models_dir / SYNCNET_CONFIG
        config = (
            SyncNetConfig.from_file(config_path)
            if config_path.exists()
            else SyncNetConfig.official()
        )
        net = SyncNet(config)
        checkpoint = torch.load(models_dir / SYNCNET_WEIGHTS, map_location="cpu", weights_only=True)
        net.load_state_dict(checkpoint["state_dict"], strict=True)
        return cls(net, device)

    @torch.inference_mode()
    def score(self, faces_rgb: np.ndarray, audio_16k: np.ndarray, fps: float) -> SyncScore:
        """faces_rgb: uint8 [T, 256, 256, 3] generated crops (T >= 16); mono float 16 kHz audio."""
        return best_offset(self._similarity(faces_rgb, audio_16k, fps, 0), self._offsets())

    @torch.inference_mode()
    def window_sums(
        self, faces_rgb: np.ndarray, audio_16k: np.ndarray, fps: float, first_frame: int
    ) -> SyncSums:
        """The similarity sums of the windows inside `faces_rgb`, the crops of frames
        first_frame.. (one segment): windows never span two segments, so each segment's sums
        depend on its own frames only and add up to the same total however a render resumed."""
        similarity = self._similarity(faces_rgb, audio_16k, fps, first_frame)
        return SyncSums(tuple(float(v) for v in similarity.sum(axis=0)), len(similarity))

    def _offsets(self) -> np.ndarray:
        return np.arange(-self.max_offset, self.max_offset + 1)

    def _similarity(
        self, faces_rgb: np.ndarray, audio_16k: np.ndarray, fps: float, first_frame: int
    ) -> np.ndarray:
        """sim(s, o) [windows, offsets] for windows at faces_rgb[0::window_step]; the audio of
        window s is read at clip frame first_frame + s + o."""
        frames = len(faces_rgb)
        if faces_rgb.shape[1:] != (FACE_SIZE, FACE_SIZE, 3):
            raise ValueError(f"faces_rgb must be [T, 256, 256, 3], got {list(faces_rgb.shape)}")
        if frames < CLIP_FRAMES:
            raise ValueError(f"sync scoring needs at least {CLIP_FRAMES} frames, got {frames}")
        starts = np.arange(0, frames - CLIP_FRAMES + 1, self.window_step)
        offsets = self._offsets()
        visual = self._visual_embeddings(faces_rgb, starts)
        audio_starts = first_frame + np.arange(
            starts[0] - self.max_offset, starts[-1] + self.max_offset + 1
        )
        audio = self._audio_embeddings(audio_16k, audio_starts, fps)
        # audio row for (window s, offset o) is (first_frame + s + o) - audio_starts[0]
        rows = starts[:, None] + offsets[None, :] - (audio_starts[0] - first_frame)
        similarity: np.ndarray = np.einsum("wd,wod->wo", visual, audio[rows])
        return similarity

    def _visual_embeddings(
        self, faces_rgb: np.ndarray, starts: np.ndarray, batch: int = 8
    ) -> np.ndarray:
        lower = faces_rgb[:, FACE_SIZE // 2 :]  # uint8 [T, 128, 256, 3]; scaled per batch
        out = []
        for i in range(0, len(starts), batch):
            clips = np.stack([lower[s : s + CLIP_FRAMES] for s in starts[i : i + batch]])
            x = torch.from_numpy(clips).to(self.device).permute(0, 1, 4, 2, 3)  # [B,16,3,128,256]
            x = x.reshape(len(clips), -1, *x.shape[3:]).to(torch.float32) / 127.5 - 1.0
            out.append(self.net.visual_encoder(x).float().cpu())
        return torch.cat(out).numpy()

    def _audio_embeddings(
        self, audio_16k: np.ndarray, frames: np.ndarray, fps: float, batch: int = 64
    ) -> np.ndarray:
        mel = melspectrogram(audio_16k)
        first = [mel_start(int(f), fps) for f in frames]
        pad_left = max(0, -min(first))
        pad_right = max(0, max(first) + WINDOW_FRAMES - mel.shape[1])
        padded = np.pad(mel, ((0, 0), (pad_left, pad_right)), constant_values=SILENCE)
        windows = np.stack([padded[:, f + pad_left : f + pad_left + WINDOW_FRAMES] for f in first])
        tensor = torch.from_numpy(windows)[:, None]  # [N, 1, 80, 52]
        out = [
            self.net.audio_encoder(tensor[i : i + batch].to(self.device)).float().cpu()
            for i in range(0, len(tensor), batch)
        ]
        return torch.cat(out).numpy()
