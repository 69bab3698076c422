"""Silence skipping: speech detection and the per-frame generation weights."""

from __future__ import annotations

import numpy as np

from runtime.engine.audio import SAMPLE_RATE
from runtime.engine.vad import FADE_FRAMES, SpeechDetector, generation_weights


def test_frames_far_from_speech_get_weight_zero_and_edges_fade() -> None:
    # Given speech from 1.0 s to 2.0 s in a 3 s clip at 25 fps
    weights = generation_weights(75, 25, [(1.0, 2.0)])
    # Then frames whose window touches speech are fully generated
    assert np.all(weights[25:50] == 1.0)
    # a frame's window reaches 120 ms ahead and 80 ms back, so frames 23-24 and 50-51 see speech
    assert np.all(weights[23:52] == 1.0)
    # then the weight ramps over FADE_FRAMES frames, strictly decreasing away from speech
    ramp_before, ramp_after = weights[23 - FADE_FRAMES : 23], weights[52 : 52 + FADE_FRAMES]
    assert np.all(np.diff(ramp_before) > 0)
    assert np.all(np.diff(ramp_after) < 0)
    assert np.all((ramp_before > 0) & (ramp_before < 1))
    # and deep silence is skipped
    assert np.all(weights[: 23 - FADE_FRAMES] == 0.0)
    assert np.all(weights[52 + FADE_FRAMES :] == 0.0)


def test_no_speech_skips_every_frame() -> None:
    assert not generation_weights(30, 25, []).any()


def test_detector_finds_speech_after_silence(speech_16k: np.ndarray) -> None:
    # Given 1.2 s of silence then 1 s of speech
    audio = np.concatenate([np.zeros(int(1.2 * SAMPLE_RATE), np.float32), speech_16k[6400:22400]])
    # When speech is detected
    spans = SpeechDetector().speech_spans(audio)
    # Then it starts after the silence (silero pads spans by 30 ms)
    assert spans
    assert 1.0 < spans[0][0] < 1.4
