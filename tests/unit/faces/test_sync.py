"""LatentSync SyncNet layout, the Wav2Lip mel and our sync score definition (spec §9)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.audio_utils import mel_filter_bank

from runtime.engine.sync import SyncScore, SyncScorer
from runtime.engine.sync.mel import mel_filters, mel_start, melspectrogram
from runtime.engine.sync.random_weights import write_random_syncnet
from runtime.engine.sync.scorer import best_offset
from runtime.engine.sync.syncnet import SyncNet, SyncNetConfig, downsample_padding


def test_given_official_config_when_run_then_both_towers_end_in_2048_at_1x1() -> None:
    # Given the full-size network on the meta device (shapes only, no memory)
    with torch.device("meta"):
        net = SyncNet(SyncNetConfig.official())
        audio = net.audio_encoder(torch.zeros(2, 1, 80, 52))
        visual = net.visual_encoder(torch.zeros(2, 48, 128, 256))
    # Then
    assert audio.shape == (2, 2048)
    assert visual.shape == (2, 2048)
    names = set(net.state_dict())
    assert "audio_encoder.down_blocks.1.conv_shortcut.weight" in names
    assert "audio_encoder.down_blocks.0.conv_shortcut.weight" not in names  # 32 -> 32
    assert "visual_encoder.down_blocks.7.downsample_conv.weight" in names
    assert "audio_encoder.down_blocks.3.downsample_conv.weight" not in names  # factor 1
    assert "visual_encoder.norm_out.weight" in names


def test_given_factors_then_asymmetric_pads_are_as_upstream() -> None:
    assert downsample_padding(2) == (0, 1, 0, 1)
    assert downsample_padding((1, 2)) == (0, 1, 1, 1)
    assert downsample_padding((2, 1)) == (1, 1, 0, 1)
    assert downsample_padding((2, 3)) == (0, 1, 0, 1)


def test_given_mel_filters_then_they_equal_librosa_slaney_55_7600() -> None:
    reference = mel_filter_bank(
        num_frequency_bins=401,
        num_mel_filters=80,
        min_frequency=55.0,
        max_frequency=7600.0,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
    ).T
    np.testing.assert_allclose(mel_filters(), reference, atol=1e-7)


def test_given_audio_when_mel_then_80_per_second_and_silence_is_minus_4() -> None:
    # Given one second of silence followed by one second of a 440 Hz tone
    t = np.arange(16000) / 16000
    audio = np.concatenate([np.zeros(16000), 0.5 * np.sin(2 * np.pi * 440 * t)]).astype(np.float32)
    # When
    mel = melspectrogram(audio)
    # Then 1 + len // 200 frames, silence at the floor, the tone well above it, all in [-4, 4]
    assert mel.shape == (80, 161)
    assert np.all(mel[:, 10:70] == -4.0)
    assert mel[:, 100:150].max() > 0
    assert mel.min() >= -4
    assert mel.max() <= 4
    assert mel_start(16, 25.0) == 51
    assert mel_start(3, 30.0) == 8


def test_given_similarities_when_best_offset_then_clip_mean_decides() -> None:
    offsets = np.arange(-2, 3)
    sim = np.array([[0.1, 0.2, 0.3, 0.9, 0.1], [0.1, 0.2, 0.3, 0.7, 0.2]])
    assert best_offset(sim, offsets) == SyncScore(confidence=pytest.approx(0.8), offset_frames=1)
    flat = np.zeros((2, 5))
    assert best_offset(flat, offsets).offset_frames == 0  # ties go to the smallest |offset|


def test_given_embeddings_with_known_lag_when_scored_then_offset_is_recovered(
    models_dir: Path, cpu: torch.device, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given audio embeddings (one per frame) and visual windows that equal those 3 frames later
    scorer = SyncScorer.load(models_dir, cpu)
    rng = np.random.default_rng(0)
    table = rng.standard_normal((200, 32)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    base = 100

    def audio(_a: np.ndarray, frames: np.ndarray, _fps: float) -> np.ndarray:
        return table[frames + base]

    def visual(_f: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return table[starts + 3 + base]

    monkeypatch.setattr(scorer, "_audio_embeddings", audio)
    monkeypatch.setattr(scorer, "_visual_embeddings", visual)
    # When
    result = scorer.score(np.zeros((40, 256, 256, 3), np.uint8), np.zeros(16000), 25.0)
    # Then
    assert result.offset_frames == 3
    assert result.confidence == pytest.approx(1.0)


def test_given_tiny_random_syncnet_when_scoring_a_clip_then_score_is_deterministic(
    models_dir: Path, cpu: torch.device
) -> None:
    # Given the tiny variant (config file beside the checkpoint) and a 1.6 s clip
    config = json.loads((models_dir / "syncnet" / "syncnet_config.json").read_text())
    assert config["visual_encoder"]["block_out_channels"][-1] == 32
    scorer = SyncScorer.load(models_dir, cpu)
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 255, (40, 256, 256, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    # When
    first, second = scorer.score(faces, audio, 25.0), scorer.score(faces, audio, 25.0)
    # Then
    assert first == second
    assert -1.0 <= first.confidence <= 1.0
    assert abs(first.offset_frames) <= scorer.max_offset


def test_given_too_short_clip_when_scored_then_error_names_the_minimum(
    models_dir: Path, cpu: torch.device
) -> None:
    scorer = SyncScorer.load(models_dir, cpu)
    with pytest.raises(ValueError, match="at least 16 frames"):
        scorer.score(np.zeros((15, 256, 256, 3), np.uint8), np.zeros(16000, np.float32), 25.0)


def test_given_tiny_writer_then_official_format_with_our_config_beside_it(tmp_path: Path) -> None:
    # Given / When (the full-size variant is the same code with the official config, 1.5 GB)
    path = tmp_path / "syncnet" / "latentsync_syncnet.pt"
    write_random_syncnet(path, 0, tiny=True)
    # Then a dict with key `state_dict` (as upstream's loader reads it) and the config file
    assert SyncNetConfig.from_file(path.parent / "syncnet_config.json").norm_num_groups == 8
    loaded = torch.load(path, weights_only=True)
    assert "audio_encoder.conv_in.weight" in loaded["state_dict"]


def test_given_clip_when_embedding_then_visual_input_is_lower_halves_frame_major_in_pm1(
    models_dir: Path, cpu: torch.device
) -> None:
    # Given frames whose pixel value encodes (frame, channel) and whose upper half is different
    scorer = SyncScorer.load(models_dir, cpu)
    faces = np.zeros((16, 256, 256, 3), np.uint8)
    for frame in range(16):
        for channel in range(3):
            faces[frame, 128:, :, channel] = 10 * frame + channel
    seen: list[torch.Tensor] = []

    def record(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return torch.nn.functional.normalize(torch.ones(x.shape[0], 32), dim=1)

    scorer.net.visual_encoder.forward = record  # type: ignore[method-assign]
    # When
    scorer.score(faces, np.zeros(16000, np.float32), 25.0)
    # Then one window of 48 channels = 16 frames x RGB, lower halves only, scaled to [-1, 1]
    (x,) = seen
    assert x.shape == (1, 48, 128, 256)
    expected = torch.tensor([(10 * f + c) / 127.5 - 1 for f in range(16) for c in range(3)])
    torch.testing.assert_close(x[0, :, 0, 0], expected)
    torch.testing.assert_close(x[0, :, -1, -1], expected)
