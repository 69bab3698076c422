"""Audio path against spec §2: loading, segment features, window arithmetic, token layout, PE."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.engine.audio import (
    SAMPLE_RATE,
    AudioEncoder,
    WindowPlan,
    frame_windows,
    load_audio_16k,
    positional_encoding,
)
from runtime.engine.engine_contract import Failure, MediaError
from runtime.engine.layout import ModelsLayout
from tests.unit.engine.conftest import MEDIA, write_wav


@pytest.fixture(scope="module")
def encoder(tiny_models: ModelsLayout) -> AudioEncoder:
    return AudioEncoder(tiny_models.whisper_dir, torch.device("cpu"), torch.float32)


def test_stereo_48k_wav_loads_as_mono_16k() -> None:
    # Given the 8 s, 48 kHz stereo sample
    # When it is loaded
    audio = load_audio_16k(MEDIA / "yongen.wav")
    # Then it is 8 s of mono float32 at 16 kHz, in [-1, 1]
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert abs(len(audio) - 8 * SAMPLE_RATE) <= 1
    assert np.abs(audio).max() <= 1.0


def test_channels_are_averaged_before_resampling(tmp_path: Path) -> None:
    # Given a 16 kHz stereo file with +0.5 on the left and -0.1 on the right
    left = np.full(1600, 0.5, np.float32)
    right = np.full(1600, -0.1, np.float32)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right]), SAMPLE_RATE)
    # When it is loaded
    audio = load_audio_16k(path)
    # Then each sample is the channel mean (within 16-bit quantization)
    assert np.allclose(audio, 0.2, atol=1e-4)


def test_a_file_that_is_not_audio_is_invalid_media(tmp_path: Path) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(b"not a wav file at all" * 10)
    with pytest.raises(MediaError) as raised:
        load_audio_16k(path)
    assert raised.value.failure == Failure.INVALID_MEDIA


def test_a_video_without_audio_has_no_speech(short_video: Path) -> None:
    with pytest.raises(MediaError) as raised:
        load_audio_16k(short_video)
    assert raised.value.failure == Failure.NO_SPEECH


def test_window_plan_follows_the_spec_arithmetic_at_25_fps() -> None:
    # Given 8 s of audio at 25 fps
    plan = WindowPlan.of(8 * SAMPLE_RATE, 25.0)
    # Then 200 frames, 400 whisper steps kept, 4 zeros in front and 12 behind, 2 steps per frame
    assert (plan.num_frames, plan.actual_len, plan.pad_front, plan.pad_back) == (200, 400, 4, 12)
    assert [plan.window_start(i) for i in (0, 1, 199)] == [0, 2, 398]


def test_window_plan_truncates_fractional_fps() -> None:
    # Given 10 s at 29.97 fps: the spec truncates to 29 for the audio windows
    plan = WindowPlan.of(10 * SAMPLE_RATE, 29.97)
    assert plan.num_frames == 290
    assert plan.mult == pytest.approx(50 / 29)
    assert (plan.pad_front, plan.pad_back) == (4, 12)  # ceil(50/29) = 2
    assert plan.window_start(290 - 1) == math.floor(289 * 50 / 29)


def test_frame_windows_see_steps_2i_minus_4_to_2i_plus_5() -> None:
    # Given features whose value is the step index (+1 so zero padding stays distinguishable)
    steps, layers = 40, 5
    features = (torch.arange(steps, dtype=torch.float32) + 1)[:, None, None].expand(
        steps, layers, 384
    )
    plan = WindowPlan.of(num_samples=int(0.8 * SAMPLE_RATE), fps=25)  # 20 frames, 40 steps
    # When the windows are cut
    windows = frame_windows(features, plan)
    # Then the layout is [T, 10*5, 384], token index = step*5 + layer
    assert windows.shape == (20, 50, 384)
    per_step = windows[:, ::5, 0] - 1  # layer 0 of each of the 10 steps, back to step index
    # frame 0: four zero steps (-1 here), then steps 0..5
    assert per_step[0].tolist() == [-1, -1, -1, -1, 0, 1, 2, 3, 4, 5]
    # frame i in the middle sees 2i-4 .. 2i+5
    assert per_step[10].tolist() == list(range(16, 26))
    # the last frame runs into the 12 trailing zeros: 34..39 then zeros
    assert per_step[19].tolist() == [34, 35, 36, 37, 38, 39, -1, -1, -1, -1]
    # all 5 layers of one step sit next to each other
    assert torch.equal(windows[5, 0:5, 7], features[6, :, 7])


def test_features_have_five_states_per_step_and_segments_are_independent(
    encoder: AudioEncoder, speech_16k: np.ndarray
) -> None:
    # Given 31 s of audio: one full 30 s segment and a 1 s segment
    audio = np.concatenate([np.tile(speech_16k, 4)[: 31 * SAMPLE_RATE]])
    # When features are computed for the whole clip and for the first segment alone
    whole = encoder.features(audio)
    first = encoder.features(audio[: 30 * SAMPLE_RATE])
    # Then each 30 s segment gives 1500 steps of [5, 384], and segment 1 does not depend on 2
    assert whole.shape == (3000, 5, 384)
    assert torch.allclose(whole[:1500], first, atol=1e-5)


def test_state_four_is_the_final_layer_norm_output(
    encoder: AudioEncoder, speech_16k: np.ndarray
) -> None:
    # Given the features of 1 s of speech
    features = encoder.features(speech_16k[:SAMPLE_RATE])
    # When layer 4 is re-run on state 3 and normalized
    with torch.inference_mode():
        layer_four = encoder.encoder.layers[3](features[None, :1500, 3].clone(), None)
        layer_four = layer_four[0] if isinstance(layer_four, tuple) else layer_four
        expected = encoder.encoder.layer_norm(layer_four)[0]
    # Then state 4 is LayerNorm(layer 4), not the raw layer output
    assert torch.allclose(features[:, 4], expected, atol=1e-4)
    assert not torch.allclose(features[:, 4], layer_four[0], atol=1e-2)


def test_frame_tokens_length_is_set_by_the_audio(
    encoder: AudioEncoder, speech_16k: np.ndarray
) -> None:
    tokens = encoder.frame_tokens(speech_16k[: int(1.3 * SAMPLE_RATE)], fps=25)
    assert tokens.shape == (32, 50, 384)  # floor(1.3 * 25)
    # the first frame's first 4 steps are the exact zero padding (20 tokens)
    assert torch.count_nonzero(tokens[0, :20]) == 0
    assert torch.count_nonzero(tokens[0, 20:]) > 0


def test_positional_encoding_matches_the_formula() -> None:
    table = positional_encoding()
    assert table.shape == (50, 384)
    assert table.dtype == torch.float32
    n, k = 7, 11
    angle = n * math.exp(-2 * k * math.log(10000.0) / 384)
    assert table[n, 2 * k].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[n, 2 * k + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert torch.equal(table[0, 1::2], torch.ones(192))
